"""``python -m rtdetr_deploy.train`` (and ``torchrun ... -m rtdetr_deploy.train``): the ``rtdetr-train`` command.

An entry point, not part of the trainer: it only hands over to the command line layer (``rtdetr_deploy.cli``).
"""

import sys

from ..cli.train import main

if __name__ == "__main__":
    sys.exit(main())
