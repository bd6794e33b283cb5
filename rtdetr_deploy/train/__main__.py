"""``python -m rtdetr_deploy.train`` (and ``torchrun ... -m rtdetr_deploy.train``): the ``rtdetr-train`` command."""

import sys

from ..train_cli import main

if __name__ == "__main__":
    sys.exit(main())
