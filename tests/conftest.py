import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Tests never write converted weights or downloads into the user's real cache.
os.environ["NAPARI_SAM_CACHE"] = tempfile.mkdtemp(prefix="napari-sam-test-cache-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
