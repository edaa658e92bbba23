"""functl: render and apply kubefuncs functions to Kubernetes."""
