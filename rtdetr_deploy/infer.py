"""``python -m rtdetr_deploy.infer SOURCE``: the ``rtdetr-infer`` command (``rtdetr_deploy.cli.infer``)."""

import sys

from .cli.infer import main

if __name__ == "__main__":
    sys.exit(main())
