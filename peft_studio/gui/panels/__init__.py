"""Side and bottom panels: thin views over the controller's state."""
