package autoscale

import (
	"context"
	"time"
)

// Orchestrator starts and stops ringkv nodes: the processes, not their
// place in the ring (the controller decommissions a node through the
// cluster before it asks for its removal). Implementations: [Docker]; for
// Kubernetes see docs/autoscale.md.
type Orchestrator interface {
	// AddNode starts a new node that joins the cluster, and returns its
	// node ID. It returns once the process is started, not joined.
	AddNode(ctx context.Context) (id string, err error)
	// RemoveNode stops the node and removes what the orchestrator made
	// for it. The controller calls it only once the node has left the
	// ring. Removing a node that is already gone is not an error.
	RemoveNode(ctx context.Context, id string) error
	// List returns the nodes this orchestrator started and has not
	// removed, running or not.
	List(ctx context.Context) ([]Node, error)
}

// Node is a node an orchestrator manages.
type Node struct {
	ID      string    // the ringkv node ID
	Created time.Time // when the orchestrator started it
	Running bool
	// HTTPAddr and RESPAddr are where the node's APIs are published for
	// clients outside the orchestrator's network, when they are.
	HTTPAddr, RESPAddr string
}
