"""Operating a deployment: access roles and tokens, admin actions, cancellation, retention."""
