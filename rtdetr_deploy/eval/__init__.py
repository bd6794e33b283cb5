"""rtdetr-eval: COCO box metrics of any deployed artifact through the runtime path."""
