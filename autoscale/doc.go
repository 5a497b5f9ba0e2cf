// Package autoscale grows and shrinks a ringkv cluster with its load: it
// adds a node when the load stays high and decommissions one when it stays
// low, through an orchestrator that starts and stops the nodes' processes.
//
// The package is in three layers, kept apart so that the decisions can be
// tested without a cluster or a clock:
//
//   - [Decider] is the policy, a pure state machine: it takes an
//     [Observation] (the nodes' load, how many members count, whether the
//     cluster is settled) and a time, and returns a [Decision] — hold, add
//     or remove — with the reason in words. A condition must hold for the
//     policy's window before it acts, and after an action nothing is done
//     for the cooldown; MinNodes and MaxNodes bound the cluster.
//   - [Cluster] reads the cluster (the member list from any node's
//     GET /v1/cluster, each member's load from its own) and starts a
//     decommission (POST /v1/decommission?node=ID); [HTTPCluster] is the
//     implementation over the nodes' HTTP API. [Orchestrator] adds and
//     removes the processes; [Docker] drives the Docker Engine API.
//   - [Controller] is the loop between them: each step it observes,
//     decides, logs the decision and acts. To scale down it decommissions
//     a node it started (the node streams its partitions away: leaving,
//     then left) and removes the node's container only once the cluster
//     reports it left; a restarted controller finishes such removals from
//     what it sees, as it keeps no state of its own beyond the policy's
//     clocks.
//
// The controller never counts on a node's load while the cluster is
// unsettled: while a member joins, leaves or is down, or a node it added
// has not joined yet, it holds and the windows start over.
package autoscale
