package serving

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Names of the leader election (environments/deploy's flags and Role).
const (
	// LeaseName is the Lease of the leader election
	// (--leader-election-id).
	LeaseName = "weft-controller-leader"
)

// IsLeader reports whether mgr's replica is the elected leader now (or
// leader election is off). The Mesh reconciler runs on every replica
// (each compiles and serves) and writes status, NetworkPolicies and
// Events only when IsLeader; a replica that loses the lease exits
// (controller-runtime's manager), so a true answer does not go stale
// while it runs.
func IsLeader(mgr manager.Manager) bool {
	select {
	case <-mgr.Elected():
		return true
	default:
		return false
	}
}

// OnElected runs fn once, when mgr's replica becomes the leader (at start
// if leader election is off), with a context that ends with the manager:
// e.g. requeue every Mesh so that the new leader writes their status at
// once.
func OnElected(mgr manager.Manager, fn func(ctx context.Context)) error {
	return mgr.Add(leaderRunnable(func(ctx context.Context) error {
		fn(ctx)
		<-ctx.Done()
		return nil
	}))
}

// leaderRunnable is a manager.Runnable that runs on the leader only.
type leaderRunnable func(context.Context) error

func (r leaderRunnable) Start(ctx context.Context) error { return r(ctx) }
func (r leaderRunnable) NeedLeaderElection() bool        { return true }

// Everywhere is a manager.Runnable that every replica runs, leader or
// not. A bare manager.RunnableFunc, and a controller without
// NeedLeaderElection set to false, run on the leader only: the Mesh
// reconciler must not be one, or followers serve nothing.
type Everywhere func(context.Context) error

// Start implements manager.Runnable.
func (r Everywhere) Start(ctx context.Context) error { return r(ctx) }

// NeedLeaderElection reports false.
func (r Everywhere) NeedLeaderElection() bool { return false }
