"""Refuse a sealed cell file scored from an unpolished L* (K23's and K24's run scripts call it after each cell).

python docs/sealed/general/polished.py OUT/digits_mgda_5.json [...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

for path in sys.argv[1:]:
    kinds = json.loads(Path(path).read_text())["floor_kinds"]
    if "best run" in kinds:
        raise SystemExit(f"{path}: a game was scored from an unpolished floor: {kinds}")
    print(f"{path}: floor kinds {kinds}")
