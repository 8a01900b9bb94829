"""gen_all.py — regenerates every fixture: runs each tests/ref/gen_*.py.
Needs Debian's python3-torch: run with /usr/bin/python3 (`make fixtures`)."""
import glob
import os
import runpy
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
for path in sorted(glob.glob(os.path.join(here, "gen_*.py"))):
    if os.path.basename(path) == "gen_all.py":
        continue
    print("fixtures:", os.path.basename(path))
    runpy.run_path(path, run_name="__main__")
