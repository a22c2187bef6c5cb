// many.go - the official SDK doing, in bulk, the Temporal calls a reconcile
// cycle makes, so bench/reconcile/run.sh can set dispatchd's cycle beside a
// real client's cost for the same calls on the same server (issue 16):
//
//	dd-interop describe-many  [--file F] [--concurrency C]   DescribeWorkflowExecution each (wid, run)
//	dd-interop terminate-many [--file F] [--concurrency C]   TerminateWorkflow each exact (wid, run)
//	dd-interop list-many      [--file F] [--concurrency C] [--chunk 100]
//	                          ListWorkflowExecutions "RunId IN (...)", chunk run ids a query
//
// Input: "workflow_id run_id" lines (F, or stdin when F is "-" or absent).
// Output: one JSON line: op, calls, concurrency, elapsed_ms (first call to last
// answer, dialing excluded), p50_ms/p95_ms/max_ms per call, and what the calls
// found (running/closed/not_found/listed/errors). Exit 1 when any call failed
// with anything but "not found" / "already completed".
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
)

type pair struct{ wid, run string }

type manyResult struct {
	Op          string  `json:"op"`
	Calls       int     `json:"calls"`
	Items       int     `json:"items"`
	Concurrency int     `json:"concurrency"`
	ElapsedMs   float64 `json:"elapsed_ms"`
	P50Ms       float64 `json:"p50_ms"`
	P95Ms       float64 `json:"p95_ms"`
	MaxMs       float64 `json:"max_ms"`
	Running     int64   `json:"running"`
	Closed      int64   `json:"closed"`
	NotFound    int64   `json:"not_found"`
	Listed      int64   `json:"listed"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
}

func readPairs(path string) ([]pair, error) {
	var r io.Reader = os.Stdin
	if path != "" && path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var out []pair
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want 'workflow_id run_id', got %q", n, sc.Text())
		}
		out = append(out, pair{f[0], f[1]})
	}
	return out, sc.Err()
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

// runMany calls do(i) for i in [0, n) on conc goroutines; returns the elapsed
// time and each call's latency.
func runMany(n, conc int, do func(i int)) (time.Duration, []float64) {
	lat := make([]float64, n)
	next := int64(-1)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < conc && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= n {
					return
				}
				s := time.Now()
				do(i)
				lat[i] = ms(time.Since(s))
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	sort.Float64s(lat)
	return el, lat
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}

func cmdMany(op string) func([]string) int {
	return func(args []string) int {
		c := newCommon(op, 10*time.Minute)
		file := c.fs.String("file", "-", "'workflow_id run_id' lines ('-': stdin)")
		conc := c.fs.Int("concurrency", 16, "calls in flight at once")
		chunk := c.fs.Int("chunk", 100, "list-many: run ids per query")
		code, ok := c.parse(args, func() error {
			if *conc < 1 || *chunk < 1 {
				return errors.New("--concurrency and --chunk must be at least 1")
			}
			return nil
		})
		if !ok {
			return code
		}
		pairs, err := readPairs(*file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dd-interop %s: %v\n", op, err)
			return 2
		}
		cl, err := c.dial(nil)
		if err != nil {
			return die(op, err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		res := manyResult{Op: op, Items: len(pairs), Concurrency: *conc}
		var firstErr atomic.Value
		fail := func(err error) {
			atomic.AddInt64(&res.Errors, 1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
		var el time.Duration
		var lat []float64
		switch op {
		case "describe-many":
			res.Calls = len(pairs)
			el, lat = runMany(len(pairs), *conc, func(i int) {
				d, err := cl.DescribeWorkflowExecution(ctx, pairs[i].wid, pairs[i].run)
				switch {
				case isNotFound(err):
					atomic.AddInt64(&res.NotFound, 1)
				case err != nil:
					fail(err)
				case d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
					atomic.AddInt64(&res.Running, 1)
				default:
					atomic.AddInt64(&res.Closed, 1)
				}
			})
		case "terminate-many":
			res.Calls = len(pairs)
			el, lat = runMany(len(pairs), *conc, func(i int) {
				err := cl.TerminateWorkflow(ctx, pairs[i].wid, pairs[i].run, "dd-interop terminate-many")
				switch {
				case err == nil:
					atomic.AddInt64(&res.Running, 1)
				case isNotFound(err): // also "workflow execution already completed"
					atomic.AddInt64(&res.NotFound, 1)
				default:
					fail(err)
				}
			})
		case "list-many":
			var chunks [][]pair
			for i := 0; i < len(pairs); i += *chunk {
				chunks = append(chunks, pairs[i:min(i+*chunk, len(pairs))])
			}
			res.Calls = len(chunks)
			el, lat = runMany(len(chunks), *conc, func(i int) {
				ids := make([]string, len(chunks[i]))
				want := map[pair]bool{}
				for k, p := range chunks[i] {
					ids[k] = quote(p.run)
					want[p] = true
				}
				resp, err := cl.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
					Namespace: c.namespace, PageSize: int32(len(ids)),
					Query: "RunId IN (" + strings.Join(ids, ",") + ")",
				})
				if err != nil {
					fail(err)
					return
				}
				for _, e := range resp.GetExecutions() {
					if !want[pair{e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()}] {
						continue
					}
					atomic.AddInt64(&res.Listed, 1)
					if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
						atomic.AddInt64(&res.Running, 1)
					} else {
						atomic.AddInt64(&res.Closed, 1)
					}
				}
			})
		}
		res.ElapsedMs = ms(el)
		res.P50Ms, res.P95Ms = percentile(lat, 0.50), percentile(lat, 0.95)
		if len(lat) > 0 {
			res.MaxMs = lat[len(lat)-1]
		}
		if s, ok := firstErr.Load().(string); ok {
			res.FirstError = s
		}
		printJSON(res)
		if res.Errors > 0 {
			return 1
		}
		return 0
	}
}
