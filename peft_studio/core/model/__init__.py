"""The model a setup builds: a frozen base, a method's parts and a head; its census and experiment."""
