"""Files the user reads and writes: label TIFFs and prompt files (no TensorFlow)."""
