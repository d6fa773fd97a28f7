"""Training, synthetic data and evaluation."""
