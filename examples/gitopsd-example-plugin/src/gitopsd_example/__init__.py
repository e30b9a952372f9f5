"""An example gitopsd plugin distribution."""
