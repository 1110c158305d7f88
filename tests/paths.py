"""Where things are, for every test module (and tests/conftest.py): the repository, the committed demo datasets and
the shared data folder beside the repository.

`SHARED_DATA` is `../shared/data` (the raw data examples/datasets/build_demo.py builds the demo dataset from) unless
the environment variable VERIFILY_TEST_SHARED_DATA names another folder; tests that need it ask for the
`shared_data` fixture (tests/shared_data.py), which skips them, and says so at the end of the run, when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_ROOT = REPO / "examples" / "datasets"  # a datasets root: ds_demo/v1, ds_demo/v2
SHARED_DATA_ENV = "VERIFILY_TEST_SHARED_DATA"
SHARED_DATA = Path(os.environ.get(SHARED_DATA_ENV) or REPO.parent / "shared" / "data")
