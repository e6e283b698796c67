"""Object detection: RetinaNet with FPN or NAS-FPN."""
