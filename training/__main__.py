"""``python -m training ...`` from a checkout: the same as ``napari-brainseg ...`` (train, finetune, evaluate, ...)."""

from __future__ import annotations

import sys

from napari_brainseg.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
