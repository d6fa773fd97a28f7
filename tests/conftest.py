import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Tests never write converted weights or downloads into the user's real cache.
os.environ["NAPARI_SAM_CACHE"] = tempfile.mkdtemp(prefix="napari-sam-test-cache-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The apps' encoder dtype is "auto" (bfloat16 where the CPU has it natively and it is faster);
# the suite compares against float32 references, so it pins float32 on every CPU kind
# (tests of "auto" itself unset this).
os.environ["NAPARI_SAM_DTYPE"] = "float32"
# ultralytics (the TinyViT reference) keeps its settings in a folder of its own, not the user's
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="napari-sam-test-yolo-"))
