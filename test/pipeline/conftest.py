import sys
from pathlib import Path

# The pipeline package lives in scripts/lib/ (a library); tests import it as `pipeline`.
LIB = Path(__file__).resolve().parents[2] / "scripts" / "lib"
if str(LIB) not in sys.path:
    sys.path.insert(0, str(LIB))
