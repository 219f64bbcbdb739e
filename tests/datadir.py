"""Where the real data sets for offline tests live: $FRX_SHARED_DATA, else ../shared/data beside the repository."""

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("FRX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
