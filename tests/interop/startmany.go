// start-many: the official SDK doing what dispatchd's takeovers do, as an anchor
// for bench/scale (issue 16): for each of N workflow ids, optionally a describe
// (dispatchd's takeover describes first, src/owner/takeover.c), then a start of a
// marker run (type dispatchd.dispatcher, task queue "dispatchd", the memo and input
// (project, queue, server_id) dispatchd writes) with WorkflowIdConflictPolicy
// TERMINATE_EXISTING and reuse ALLOW_DUPLICATE: a takeover when a run of that id
// is running, a plain start when none is. C ids at a time over the client's one
// gRPC connection. With --watch each new run also gets what dispatchd's loss
// watch holds: a long-poll on its close event (held until the command ends),
// opened as soon as its start returns. Prints one JSON line: n, ok, failed, took_over (how many
// terminated a running run: the describe saw one), elapsed_ms, per-call p50/p95
// of the whole takeover and of its start.
//
//	dd-interop start-many --prefix dispatcher-scale-q --n 1000 [--width 5] --concurrency 32 [--describe-first] [--watch]
//
// The ids are PREFIX followed by the index 0..N-1, zero-padded to --width digits
// (bench/scale's dispatchers scale/q00000.. have the ids dispatcher-scale-q00000..).
package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

func cmdStartMany(args []string) int {
	c := newCommon("start-many", 600*time.Second)
	var prefix, serverID string
	var n, width, conc int
	var describeFirst, watch bool
	c.fs.StringVar(&prefix, "prefix", "", "workflow id prefix; the ids are PREFIX + index (required)")
	c.fs.IntVar(&n, "n", 1000, "how many ids (1..100000)")
	c.fs.IntVar(&width, "width", 5, "the index is zero-padded to this many digits (1..12)")
	c.fs.IntVar(&conc, "concurrency", 32, "ids in flight at once (1..10000)")
	c.fs.BoolVar(&describeFirst, "describe-first", false, "describe each id before its start, as dispatchd's takeover does")
	c.fs.BoolVar(&watch, "watch", false, "after each start, long-poll the new run's close event until the command ends, as dispatchd's loss watch does")
	c.fs.StringVar(&serverID, "server-id", "sdk-anchor", "the server_id written into each run's memo and input")
	if rc, ok := c.parse(args, func() error {
		if prefix == "" {
			return errors.New("--prefix is required")
		}
		if n < 1 || n > 100000 {
			return errors.New("--n must be within 1..100000")
		}
		if width < 1 || width > 12 {
			return errors.New("--width must be within 1..12")
		}
		if conc < 1 || conc > 10000 {
			return errors.New("--concurrency must be within 1..10000")
		}
		return nil
	}); !ok {
		return rc
	}
	cl, err := c.dial(nil)
	if err != nil {
		return die("start-many", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()

	total := make([]float64, n)
	starts := make([]float64, n)
	var failed, tookOver atomic.Int64
	var firstErr atomic.Value
	idx := make(chan int)
	wctx, wcancel := context.WithCancel(ctx)
	var watches sync.WaitGroup
	var watching atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				id := fmt.Sprintf("%s%0*d", prefix, width, i)
				// a memo and input of the size dispatchd writes (its project, queue, server_id)
				memo := map[string]any{"project": prefix, "queue": fmt.Sprintf("%0*d", width, i),
					"server_id": serverID}
				t := time.Now()
				if describeFirst {
					d, err := cl.DescribeWorkflowExecution(ctx, id, "")
					var nf *serviceerror.NotFound
					if err != nil && !errors.As(err, &nf) {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("describe %s: %v", id, err))
						total[i] = float64(time.Since(t).Microseconds()) / 1000
						continue
					}
					if err == nil && d.WorkflowExecutionInfo.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
						tookOver.Add(1)
					}
				}
				ts := time.Now()
				run, err := cl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
					ID:                       id,
					TaskQueue:                "dispatchd",
					WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING,
					WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
					Memo:                     memo,
				}, "dispatchd.dispatcher", memo)
				starts[i] = float64(time.Since(ts).Microseconds()) / 1000
				total[i] = float64(time.Since(t).Microseconds()) / 1000
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("start %s: %v", id, err))
				} else if watch {
					watches.Add(1)
					watching.Add(1)
					go func() {
						defer watches.Done()
						it := cl.GetWorkflowHistory(wctx, id, run.GetRunID(), true,
							enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
						for it.HasNext() {
							if _, err := it.Next(); err != nil {
								return
							}
						}
					}()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		idx <- i
	}
	close(idx)
	wg.Wait()
	elapsed := time.Since(t0)
	wcancel()
	watches.Wait()
	sort.Float64s(total)
	sort.Float64s(starts)
	out := map[string]any{
		"n": n, "ok": int64(n) - failed.Load(), "failed": failed.Load(), "concurrency": conc,
		"describe_first": describeFirst, "elapsed_ms": elapsed.Milliseconds(),
		"per_s":  float64(n) / elapsed.Seconds(),
		"p50_ms": percentile(total, 0.50), "p95_ms": percentile(total, 0.95),
		"start_p50_ms": percentile(starts, 0.50), "start_p95_ms": percentile(starts, 0.95),
	}
	if describeFirst {
		out["took_over"] = tookOver.Load()
	}
	if watch {
		out["watches"] = watching.Load()
	}
	if e := firstErr.Load(); e != nil {
		out["first_error"] = e
	}
	printJSON(out)
	if failed.Load() > 0 {
		return 1
	}
	return 0
}
