// Package deploy holds how banksync runs in production: the Kubernetes
// manifests under k8s/ (see README.md). It has no code of its own; its tests
// decode every manifest strictly into the Kubernetes API types and check
// them against the binary: the flags' environment variables, the ports,
// the probes and the shutdown bound.
package deploy
