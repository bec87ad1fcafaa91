"""The local admin socket: operator commands against a running appliance."""
