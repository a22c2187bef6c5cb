// dd-interop: a real Temporal Go SDK client and worker for dispatchd's interop tests
// (tests/interop/*.sh). What dispatchd does to a user's task queue and to a user's
// own dispatcher workflow is judged here by the official SDK, not by code of ours
// that speaks Temporal's HTTP API the same way dispatchd does.
//
//	dd-interop worker         --task-queue Q[,Q2...] [--cas-every 3s] [--state-file F] [--runs-log F]
//	dd-interop users          --task-queue Q [--n 20] [--timeout 60s]
//	dd-interop failed-tasks   --task-queue Q | --workflow-id W [--all] [--verbose]
//	dd-interop describe-chain --workflow-id W [--run-id R]
//	dd-interop query-state    --workflow-id W [--run-id R]
//	dd-interop signal         --workflow-id W --name NAME [--input JSON]
//	dd-interop describe-many | terminate-many | list-many  [--file F] [--concurrency C]  (many.go)
//	dd-interop start-many     --prefix P --n N [--concurrency C] [--describe-first]   (startmany.go)
//
// Every subcommand also takes --address HOST:PORT (the frontend's gRPC address) and
// --namespace NS. Results go to stdout (one number or one JSON document); logs go to
// stderr. Exit codes: 0 ok, 1 the operation failed, 2 bad usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

const usageText = `usage: dd-interop COMMAND [flags]
commands:
  worker          an SDK worker with DispatcherWorkflow and UserWorkflow (one or more queues)
  users           start N UserWorkflows and wait for all of them
  failed-tasks    count WorkflowTaskFailed events on a task queue or workflow id
  describe-chain  the continue-as-new chain of a workflow id, as JSON
  query-state     the 'state' query of a DispatcherWorkflow, as JSON
  signal          send a signal to a workflow
  describe-many   describe, terminate or list (RunId IN, --chunk per query) the
  terminate-many  'workflow_id run_id' lines of --file (or stdin), --concurrency
  list-many       at once; one JSON line: elapsed_ms, p50/p95 per call (many.go)
  start-many      N takeover-like starts (TERMINATE_EXISTING), C at a time: elapsed and p50/p95 as JSON
every command takes --address HOST:PORT --namespace NS (see COMMAND -h)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usageText)
		os.Exit(2)
	}
	cmds := map[string]func([]string) int{
		"worker":         cmdWorker,
		"users":          cmdUsers,
		"failed-tasks":   cmdFailedTasks,
		"describe-chain": cmdDescribeChain,
		"query-state":    cmdQueryState,
		"signal":         cmdSignal,
		"describe-many":  cmdMany("describe-many"),
		"terminate-many": cmdMany("terminate-many"),
		"list-many":      cmdMany("list-many"),
		"start-many":     cmdStartMany,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "dd-interop: unknown command '%s'\n%s", os.Args[1], usageText)
		os.Exit(2)
	}
	os.Exit(run(os.Args[2:]))
}

// ------------------------------------------------------------------ common flags

type common struct {
	fs        *flag.FlagSet
	address   string
	namespace string
	timeout   time.Duration
	verbose   bool
}

func newCommon(name string, timeout time.Duration) *common {
	c := &common{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.StringVar(&c.address, "address", "127.0.0.1:7233", "Temporal frontend gRPC address HOST:PORT")
	c.fs.StringVar(&c.namespace, "namespace", "default", "Temporal namespace")
	c.fs.DurationVar(&c.timeout, "timeout", timeout, "give up after this long")
	c.fs.BoolVar(&c.verbose, "verbose", false, "log details to stderr")
	return c
}

// parse returns 0 when the flags are good, else the exit code (2, or 0 for -h).
func (c *common) parse(args []string, check func() error) (int, bool) {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "dd-interop %s: unexpected argument '%s'\n", c.fs.Name(), c.fs.Arg(0))
		return 2, false
	}
	if check != nil {
		if err := check(); err != nil {
			fmt.Fprintf(os.Stderr, "dd-interop %s: %v\n", c.fs.Name(), err)
			return 2, false
		}
	}
	return 0, true
}

func (c *common) dial(logger sdklog.Logger) (client.Client, error) {
	if logger == nil {
		level := slog.LevelWarn
		if c.verbose {
			level = slog.LevelDebug
		}
		logger = newLogger(level, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return client.DialContext(ctx, client.Options{
		HostPort:  c.address,
		Namespace: c.namespace,
		Logger:    logger,
		Identity:  fmt.Sprintf("dd-interop-%s@%d", c.fs.Name(), os.Getpid()),
	})
}

func die(cmd string, err error) int {
	fmt.Fprintf(os.Stderr, "dd-interop %s: %v\n", cmd, err)
	return 1
}

func printJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own types: cannot happen
	}
	fmt.Println(string(b))
}

// quote makes a visibility query string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "\\'") + "'" }

// ------------------------------------------------------------------ logging

// events appends JSON lines to the worker's --state-file (nil: nowhere).
type events struct {
	mu sync.Mutex
	f  *os.File
}

func (e *events) write(event string, kv map[string]any) {
	if e == nil || e.f == nil {
		return
	}
	m := map[string]any{"ts": time.Now().UTC().Format(time.RFC3339Nano), "event": event}
	for k, v := range kv {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.f.Write(append(b, '\n'))
}

// logger is the SDK's slog logger on stderr, and it also notices the SDK's own
// report of a failed workflow task ("Failed to process workflow task.", logged by
// the worker for every attempt it fails: unknown workflow type, panic,
// nondeterminism) and turns it into one line `event=workflow_task_failed ...`
// plus an entry in the state file, so a test can tell what the worker suffered.
type logger struct {
	inner sdklog.Logger
	ev    *events
}

func newLogger(level slog.Level, ev *events) *logger {
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	return &logger{inner: sdklog.NewStructuredLogger(slog.New(h)), ev: ev}
}

func (l *logger) Debug(msg string, kv ...any) { l.inner.Debug(msg, kv...) }
func (l *logger) Info(msg string, kv ...any)  { l.inner.Info(msg, kv...) }
func (l *logger) Error(msg string, kv ...any) { l.note(msg, kv); l.inner.Error(msg, kv...) }
func (l *logger) Warn(msg string, kv ...any)  { l.note(msg, kv); l.inner.Warn(msg, kv...) }

func (l *logger) note(msg string, kv []any) {
	if !strings.Contains(msg, "Failed to process workflow task") {
		return
	}
	fields := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := kv[i].(string); ok {
			fields[k] = fmt.Sprint(kv[i+1])
		}
	}
	fmt.Fprintf(os.Stderr, "event=workflow_task_failed workflow_type=%q workflow_id=%q run_id=%q attempt=%v error=%q\n",
		fields["WorkflowType"], fields["WorkflowID"], fields["RunID"], fields["Attempt"], fields["Error"])
	l.ev.write("workflow_task_failed", fields)
}

// ------------------------------------------------------------------ workflows

// casEvery is the worker's --cas-every. A workflow reads it once, through a side
// effect, when its chain begins, and carries it along: a replay never sees a
// different value.
var casEvery = 3 * time.Second

// workerEvents is the worker's state file (nil without --state-file).
var workerEvents *events

// runsLog is the worker's --runs-log (nil: none): one plain line per dispatcher
// run this worker begins, for shell harnesses (bench/fleet/run.sh MODE=workflow):
//
//	run TS_US WORKFLOW_ID RUN_ID FIRST_RUN_ID GENERATION STARTED_BY WORKER_PID
//
// It is the workflow's own record of which server id started its chain.
var runsLog struct {
	mu sync.Mutex
	f  *os.File
}

func writeRunLine(wid, rid, first string, gen int, startedBy string) {
	runsLog.mu.Lock()
	defer runsLog.mu.Unlock()
	if runsLog.f == nil {
		return
	}
	if startedBy == "" {
		startedBy = "-"
	}
	fmt.Fprintf(runsLog.f, "run %d %s %s %s %d %s %d\n", time.Now().UnixMicro(), wid, rid, first, gen,
		startedBy, os.Getpid())
}

// DispatcherState is what DispatcherWorkflow carries from run to run of its
// continue-as-new chain, and what its `state` query returns.
type DispatcherState struct {
	StartedBy       string         `json:"started_by"`        // server id that started the chain
	StartedBySource string         `json:"started_by_source"` // "input", "memo" or "" (neither had one)
	Dispatches      int            `json:"dispatches"`        // `dispatch` signals received
	WorkersSignals  int            `json:"workers_signals"`   // `workers` signals (dispatchd's batches)
	Generation      int            `json:"generation"`        // 0 for the chain's first run
	FirstRunID      string         `json:"first_run_id"`
	RunID           string         `json:"run_id"`
	CasEveryMs      int64          `json:"cas_every_ms"`
	Input           map[string]any `json:"input"` // the chain's input as it was started
}

// Carry is DispatcherWorkflow's second argument: empty when dispatchd (or anyone)
// starts a chain with one input value, set by the workflow's own continue-as-new.
type Carry struct {
	State *DispatcherState `json:"state,omitempty"`
}

// DispatcherWorkflow is a Compozy-like dispatcher: long-running, signal-driven,
// continuing as new every cas_every. Signals: `dispatch` (counted), `workers`
// (counted: dispatchd's worker batches), `finish` (the workflow returns its state,
// ending the chain on its own).
func DispatcherWorkflow(ctx workflow.Context, input map[string]any, carry Carry) (*DispatcherState, error) {
	info := workflow.GetInfo(ctx)
	lg := workflow.GetLogger(ctx)
	var st DispatcherState
	if carry.State != nil {
		st = *carry.State
		st.Generation++
	} else {
		st.Input = input
		if s, ok := input["server_id"].(string); ok && s != "" {
			st.StartedBy, st.StartedBySource = s, "input"
		} else if info.Memo != nil && info.Memo.GetFields()["server_id"] != nil {
			var s string
			if err := converter.GetDefaultDataConverter().FromPayload(info.Memo.GetFields()["server_id"], &s); err != nil {
				lg.Warn("memo field server_id is not a string", "Error", err)
			} else if s != "" {
				st.StartedBy, st.StartedBySource = s, "memo"
			}
		}
		if err := workflow.SideEffect(ctx, func(workflow.Context) any { return casEvery.Milliseconds() }).Get(&st.CasEveryMs); err != nil {
			return nil, err
		}
	}
	st.RunID = info.WorkflowExecution.RunID
	st.FirstRunID = info.FirstRunID
	if err := workflow.SetQueryHandler(ctx, "state", func() (*DispatcherState, error) { return &st, nil }); err != nil {
		return nil, err
	}
	if !workflow.IsReplaying(ctx) {
		workerEvents.write("dispatcher_run", map[string]any{
			"workflow_id": info.WorkflowExecution.ID, "run_id": st.RunID, "first_run_id": st.FirstRunID,
			"generation": st.Generation, "started_by": st.StartedBy,
		})
		writeRunLine(info.WorkflowExecution.ID, st.RunID, st.FirstRunID, st.Generation, st.StartedBy)
	}
	lg.Info("dispatcher run", "Generation", st.Generation, "StartedBy", st.StartedBy)

	dispatch := workflow.GetSignalChannel(ctx, "dispatch")
	workers := workflow.GetSignalChannel(ctx, "workers")
	finish := workflow.GetSignalChannel(ctx, "finish")
	var timer workflow.Future
	if st.CasEveryMs > 0 {
		timer = workflow.NewTimer(ctx, time.Duration(st.CasEveryMs)*time.Millisecond)
	}
	finished, due := false, false
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(dispatch, func(c workflow.ReceiveChannel, _ bool) { var v any; c.Receive(ctx, &v); st.Dispatches++ })
	sel.AddReceive(workers, func(c workflow.ReceiveChannel, _ bool) { var v any; c.Receive(ctx, &v); st.WorkersSignals++ })
	sel.AddReceive(finish, func(c workflow.ReceiveChannel, _ bool) { var v any; c.Receive(ctx, &v); finished = true })
	if timer != nil {
		sel.AddFuture(timer, func(workflow.Future) { due = true })
	}
	for !finished && !due {
		sel.Select(ctx)
	}
	// Nothing received may be lost across continue-as-new: drain what is buffered.
	var v any
	for dispatch.ReceiveAsync(&v) {
		st.Dispatches++
	}
	for workers.ReceiveAsync(&v) {
		st.WorkersSignals++
	}
	for finish.ReceiveAsync(&v) {
		finished = true
	}
	if finished {
		lg.Info("dispatcher finished", "Generation", st.Generation)
		return &st, nil
	}
	return nil, workflow.NewContinueAsNewError(ctx, DispatcherWorkflow, input, Carry{State: &st})
}

// UserWorkflow is an ordinary user workflow: it returns its input after 100 ms.
func UserWorkflow(ctx workflow.Context, input any) (any, error) {
	if err := workflow.Sleep(ctx, 100*time.Millisecond); err != nil {
		return nil, err
	}
	return input, nil
}

// ------------------------------------------------------------------ worker

func cmdWorker(args []string) int {
	c := newCommon("worker", 30*time.Second)
	var tq, stateFile, runsFile string
	c.fs.StringVar(&tq, "task-queue", "", "task queue to poll (required); several: Q1,Q2,... (one SDK worker each, one client)")
	c.fs.DurationVar(&casEvery, "cas-every", 3*time.Second, "DispatcherWorkflow continues as new this often (0: never)")
	c.fs.StringVar(&stateFile, "state-file", "", "append JSON lines of what the worker saw (runs, failed tasks)")
	c.fs.StringVar(&runsFile, "runs-log", "", "append one plain line per dispatcher run begun: run TS_US WID RUN FIRST_RUN GEN STARTED_BY PID")
	var queues []string
	if rc, ok := c.parse(args, func() error {
		for _, q := range strings.Split(tq, ",") {
			if q = strings.TrimSpace(q); q != "" {
				queues = append(queues, q)
			}
		}
		if len(queues) == 0 {
			return errors.New("--task-queue is required")
		}
		if casEvery < 0 {
			return errors.New("--cas-every must not be negative")
		}
		return nil
	}); !ok {
		return rc
	}
	ev := &events{}
	if stateFile != "" {
		f, err := os.OpenFile(stateFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return die("worker", err)
		}
		defer f.Close()
		ev.f = f
	}
	workerEvents = ev
	if runsFile != "" {
		f, err := os.OpenFile(runsFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return die("worker", err)
		}
		defer f.Close()
		runsLog.f = f
	}
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	cl, err := c.dial(newLogger(level, ev))
	if err != nil {
		return die("worker", err)
	}
	defer cl.Close()
	var ws []worker.Worker
	for _, q := range queues {
		w := worker.New(cl, q, worker.Options{})
		w.RegisterWorkflow(DispatcherWorkflow)
		w.RegisterWorkflow(UserWorkflow)
		ws = append(ws, w)
	}
	// Start all, then wait for SIGINT/SIGTERM and stop all (what Run does for one).
	for i, w := range ws {
		if err := w.Start(); err != nil {
			for _, s := range ws[:i] {
				s.Stop()
			}
			return die("worker", fmt.Errorf("task queue %s: %w", queues[i], err))
		}
	}
	ev.write("worker_started", map[string]any{"task_queue": tq, "pid": os.Getpid()})
	fmt.Fprintf(os.Stderr, "event=worker_started task_queue=%s pid=%d cas_every=%s\n", tq, os.Getpid(), casEvery)
	<-worker.InterruptCh()
	for _, w := range ws {
		w.Stop()
	}
	ev.write("worker_stopped", nil)
	fmt.Fprintf(os.Stderr, "event=worker_stopped task_queue=%s\n", tq)
	return 0
}

// ------------------------------------------------------------------ users

func cmdUsers(args []string) int {
	c := newCommon("users", 60*time.Second)
	var tq string
	var n int
	c.fs.StringVar(&tq, "task-queue", "", "task queue of the user's worker (required)")
	c.fs.IntVar(&n, "n", 20, "how many UserWorkflows to start")
	if rc, ok := c.parse(args, func() error {
		if tq == "" {
			return errors.New("--task-queue is required")
		}
		if n < 1 || n > 10000 {
			return errors.New("--n must be within 1..10000")
		}
		return nil
	}); !ok {
		return rc
	}
	cl, err := c.dial(nil)
	if err != nil {
		return die("users", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	t0 := time.Now()
	prefix := fmt.Sprintf("user-%s-%d-%d", tq, os.Getpid(), t0.UnixNano())
	var runs []client.WorkflowRun
	for i := 0; i < n; i++ {
		run, err := cl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: fmt.Sprintf("%s-%d", prefix, i), TaskQueue: tq,
		}, "UserWorkflow", map[string]any{"i": i})
		if err != nil {
			fmt.Fprintf(os.Stderr, "start %d: %v\n", i, err)
			break
		}
		runs = append(runs, run)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	completed, failed := 0, 0
	for i, run := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out map[string]any
			err := run.Get(ctx, &out)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && fmt.Sprint(out["i"]) == fmt.Sprint(i) {
				completed++
				return
			}
			failed++
			fmt.Fprintf(os.Stderr, "workflow %s: result %v, error %v\n", run.GetID(), out, err)
		}()
	}
	wg.Wait()
	printJSON(map[string]any{"started": len(runs), "completed": completed, "failed": failed + n - len(runs),
		"elapsed_ms": time.Since(t0).Milliseconds()})
	if completed != n {
		return 1
	}
	return 0
}

// ------------------------------------------------------------------ history helpers

type execRef struct{ id, run, typ string }

func listExecutions(ctx context.Context, cl client.Client, ns, query string) ([]execRef, error) {
	var out []execRef
	var token []byte
	for {
		resp, err := cl.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: ns, Query: query, PageSize: 1000, NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", query, err)
		}
		for _, e := range resp.GetExecutions() {
			out = append(out, execRef{e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(), e.GetType().GetName()})
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return out, nil
		}
	}
}

func history(ctx context.Context, cl client.Client, wid, rid string, filter enumspb.HistoryEventFilterType, max int) ([]*historypb.HistoryEvent, error) {
	it := cl.GetWorkflowHistory(ctx, wid, rid, false, filter)
	var evs []*historypb.HistoryEvent
	for it.HasNext() && (max <= 0 || len(evs) < max) {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("history of %s run %s: %w", wid, rid, err)
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// serverSideCauses are WorkflowTaskFailed causes the server records on its own
// while a worker did nothing wrong: FORCE_CLOSE_COMMAND when the run is closed
// (terminated: a takeover, a release, the reconciler) under a workflow task in
// flight, UNHANDLED_COMMAND when new events (a signal) arrived while the
// worker completed the task. failed-tasks leaves them out unless --all.
var serverSideCauses = map[enumspb.WorkflowTaskFailedCause]bool{
	enumspb.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND: true,
	enumspb.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND:   true,
}

// countFailedTasks returns the WorkflowTaskFailed events of one run, counted
// and not counted (server-side causes, when !all), and their causes.
func countFailedTasks(ctx context.Context, cl client.Client, e execRef, all bool) (n, skipped int, causes []string, err error) {
	evs, err := history(ctx, cl, e.id, e.run, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT, 0)
	if err != nil {
		return 0, 0, nil, err
	}
	for _, ev := range evs {
		if ev.GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED {
			continue
		}
		cause := ev.GetWorkflowTaskFailedEventAttributes().GetCause()
		causes = append(causes, strings.TrimPrefix(enumspb.WorkflowTaskFailedCause_name[int32(cause)], "WORKFLOW_TASK_FAILED_CAUSE_"))
		if !all && serverSideCauses[cause] {
			skipped++
		} else {
			n++
		}
	}
	return n, skipped, causes, nil
}

// ------------------------------------------------------------------ failed-tasks

func cmdFailedTasks(args []string) int {
	c := newCommon("failed-tasks", 30*time.Second)
	var tq, wid string
	var all bool
	c.fs.BoolVar(&all, "all", false, "also count the server's own FORCE_CLOSE_COMMAND and UNHANDLED_COMMAND failures")
	c.fs.StringVar(&tq, "task-queue", "", "every workflow (visibility) on this task queue")
	c.fs.StringVar(&wid, "workflow-id", "", "every run of this workflow id (all its chains)")
	if rc, ok := c.parse(args, func() error {
		if (tq == "") == (wid == "") {
			return errors.New("give exactly one of --task-queue and --workflow-id")
		}
		return nil
	}); !ok {
		return rc
	}
	cl, err := c.dial(nil)
	if err != nil {
		return die("failed-tasks", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	query := "TaskQueue = " + quote(tq)
	if wid != "" {
		query = "WorkflowId = " + quote(wid)
	}
	execs, err := listExecutions(ctx, cl, c.namespace, query)
	if err != nil {
		return die("failed-tasks", err)
	}
	total := 0
	for _, e := range execs {
		n, skipped, causes, err := countFailedTasks(ctx, cl, e, all)
		if err != nil {
			return die("failed-tasks", err)
		}
		total += n
		if c.verbose || n > 0 || skipped > 0 {
			// The history holds the first failure; the server retries the task with
			// its attempt count climbing, visible as the pending task's attempt.
			attempt := int32(0)
			if d, err := cl.DescribeWorkflowExecution(ctx, e.id, e.run); err == nil && d.GetPendingWorkflowTask() != nil {
				attempt = d.GetPendingWorkflowTask().GetAttempt()
			}
			fmt.Fprintf(os.Stderr, "workflow_id=%s run_id=%s type=%s workflow_task_failed_events=%d not_counted=%d causes=%s pending_task_attempt=%d\n",
				e.id, e.run, e.typ, n, skipped, strings.Join(causes, ","), attempt)
		}
	}
	fmt.Println(total)
	return 0
}

// ------------------------------------------------------------------ describe-chain

type termination struct {
	RunID    string `json:"run_id"`
	Reason   string `json:"reason"`
	Identity string `json:"identity"`
}

type chainInfo struct {
	WorkflowID          string         `json:"workflow_id"`
	FirstRunID          string         `json:"first_run_id"`
	CurrentRunID        string         `json:"current_run_id"` // the chain's last run
	Status              string         `json:"status"`         // of that run: RUNNING, COMPLETED, TERMINATED, ...
	Type                string         `json:"type"`
	TaskQueue           string         `json:"task_queue"`
	Runs                int            `json:"runs"`
	ContinuedAsNewCount int            `json:"continued_as_new_count"`
	TerminatedCount     int            `json:"terminated_count"` // runs of this chain that were terminated (0 or 1)
	TerminationReason   string         `json:"termination_reason,omitempty"`
	TerminationIdentity string         `json:"termination_identity,omitempty"`
	Memo                map[string]any `json:"memo"`
	StartTime           time.Time      `json:"start_time"`           // of the first run
	CloseTime           *time.Time     `json:"close_time,omitempty"` // of the last run, once closed
	IDRuns              int            `json:"id_runs"`              // every run of the workflow id, all chains
	IDTerminations      []termination  `json:"id_terminations"`      // every terminated run of the id, oldest first
	RunIDs              []string       `json:"run_ids"`
}

// closeEvent is the close event of a closed run, nil for a running one.
func closeEvent(ctx context.Context, cl client.Client, wid, rid string) (*historypb.HistoryEvent, error) {
	d, err := cl.DescribeWorkflowExecution(ctx, wid, rid)
	if err != nil {
		return nil, fmt.Errorf("describe %s run %s: %w", wid, rid, err)
	}
	if d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil, nil
	}
	evs, err := history(ctx, cl, wid, rid, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT, 1)
	if err != nil || len(evs) == 0 {
		return nil, fmt.Errorf("close event of %s run %s: %v", wid, rid, err)
	}
	return evs[0], nil
}

func describeChain(ctx context.Context, cl client.Client, ns, wid, rid string) (*chainInfo, error) {
	if rid == "" {
		d, err := cl.DescribeWorkflowExecution(ctx, wid, "")
		if err != nil {
			return nil, fmt.Errorf("describe %s: %w", wid, err)
		}
		rid = d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	}
	// Backwards: each run's first event names the run it continued.
	runs := []string{rid}
	firstRun := ""
	for cur := rid; len(runs) < 100000; {
		evs, err := history(ctx, cl, wid, cur, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT, 1)
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 || evs[0].GetWorkflowExecutionStartedEventAttributes() == nil {
			return nil, fmt.Errorf("run %s of %s has no started event", cur, wid)
		}
		a := evs[0].GetWorkflowExecutionStartedEventAttributes()
		if firstRun == "" {
			firstRun = a.GetFirstExecutionRunId()
		}
		prev := a.GetContinuedExecutionRunId()
		if prev == "" {
			break
		}
		runs = append([]string{prev}, runs...)
		cur = prev
	}
	// Forwards: a run that continued as new names its successor in its close event.
	ci := &chainInfo{WorkflowID: wid, Memo: map[string]any{}, IDTerminations: []termination{}}
	for cur := rid; len(runs) < 100000; {
		ev, err := closeEvent(ctx, cl, wid, cur)
		if err != nil {
			return nil, err
		}
		if ev == nil {
			break
		}
		if a := ev.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
			runs = append(runs, a.GetNewExecutionRunId())
			cur = a.GetNewExecutionRunId()
			continue
		}
		if a := ev.GetWorkflowExecutionTerminatedEventAttributes(); a != nil {
			ci.TerminatedCount = 1
			ci.TerminationReason, ci.TerminationIdentity = a.GetReason(), a.GetIdentity()
		}
		t := ev.GetEventTime().AsTime()
		ci.CloseTime = &t
		break
	}
	ci.RunIDs = runs
	ci.Runs = len(runs)
	ci.ContinuedAsNewCount = len(runs) - 1
	ci.FirstRunID = runs[0]
	if firstRun != "" && firstRun != runs[0] {
		return nil, fmt.Errorf("chain of %s: first run by walking is %s, the started event says %s", wid, runs[0], firstRun)
	}
	ci.CurrentRunID = runs[len(runs)-1]
	d, err := cl.DescribeWorkflowExecution(ctx, wid, ci.CurrentRunID)
	if err != nil {
		return nil, fmt.Errorf("describe %s run %s: %w", wid, ci.CurrentRunID, err)
	}
	info := d.GetWorkflowExecutionInfo()
	ci.Status = strings.TrimPrefix(enumspb.WorkflowExecutionStatus_name[int32(info.GetStatus())], "WORKFLOW_EXECUTION_STATUS_")
	ci.Type = info.GetType().GetName()
	ci.TaskQueue = info.GetTaskQueue()
	for k, p := range info.GetMemo().GetFields() {
		var v any
		if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err != nil {
			v = fmt.Sprintf("<undecodable: %v>", err)
		}
		ci.Memo[k] = v
	}
	if d0, err := cl.DescribeWorkflowExecution(ctx, wid, ci.FirstRunID); err == nil {
		ci.StartTime = d0.GetWorkflowExecutionInfo().GetStartTime().AsTime()
	}
	// Every run of the id, and every termination among them.
	all, err := listExecutions(ctx, cl, ns, "WorkflowId = "+quote(wid))
	if err != nil {
		return nil, err
	}
	ci.IDRuns = len(all)
	terms, err := listExecutions(ctx, cl, ns, "WorkflowId = "+quote(wid)+" AND ExecutionStatus = 'Terminated'")
	if err != nil {
		return nil, err
	}
	type tt struct {
		t time.Time
		x termination
	}
	var ts []tt
	for _, e := range terms {
		ev, err := closeEvent(ctx, cl, e.id, e.run)
		if err != nil || ev == nil || ev.GetWorkflowExecutionTerminatedEventAttributes() == nil {
			continue
		}
		a := ev.GetWorkflowExecutionTerminatedEventAttributes()
		ts = append(ts, tt{ev.GetEventTime().AsTime(), termination{e.run, a.GetReason(), a.GetIdentity()}})
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].t.Before(ts[j].t) })
	for _, x := range ts {
		ci.IDTerminations = append(ci.IDTerminations, x.x)
	}
	return ci, nil
}

func cmdDescribeChain(args []string) int {
	c := newCommon("describe-chain", 30*time.Second)
	var wid, rid string
	c.fs.StringVar(&wid, "workflow-id", "", "workflow id (required)")
	c.fs.StringVar(&rid, "run-id", "", "any run of the chain (default: the id's latest run)")
	if rc, ok := c.parse(args, func() error {
		if wid == "" {
			return errors.New("--workflow-id is required")
		}
		return nil
	}); !ok {
		return rc
	}
	cl, err := c.dial(nil)
	if err != nil {
		return die("describe-chain", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ci, err := describeChain(ctx, cl, c.namespace, wid, rid)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			fmt.Fprintf(os.Stderr, "dd-interop describe-chain: %v\n", err)
			return 1
		}
		return die("describe-chain", err)
	}
	printJSON(ci)
	return 0
}

// ------------------------------------------------------------------ query-state, signal

func cmdQueryState(args []string) int {
	c := newCommon("query-state", 15*time.Second)
	var wid, rid string
	c.fs.StringVar(&wid, "workflow-id", "", "workflow id (required)")
	c.fs.StringVar(&rid, "run-id", "", "run (default: the current one)")
	if rc, ok := c.parse(args, func() error {
		if wid == "" {
			return errors.New("--workflow-id is required")
		}
		return nil
	}); !ok {
		return rc
	}
	cl, err := c.dial(nil)
	if err != nil {
		return die("query-state", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	v, err := cl.QueryWorkflow(ctx, wid, rid, "state")
	if err != nil {
		return die("query-state", err)
	}
	var st any
	if err := v.Get(&st); err != nil {
		return die("query-state", err)
	}
	printJSON(st)
	return 0
}

func cmdSignal(args []string) int {
	c := newCommon("signal", 15*time.Second)
	var wid, rid, name, input string
	c.fs.StringVar(&wid, "workflow-id", "", "workflow id (required)")
	c.fs.StringVar(&rid, "run-id", "", "run (default: the current one)")
	c.fs.StringVar(&name, "name", "", "signal name (required)")
	c.fs.StringVar(&input, "input", "", "signal input, one JSON value (default: none)")
	var arg any
	if rc, ok := c.parse(args, func() error {
		if wid == "" || name == "" {
			return errors.New("--workflow-id and --name are required")
		}
		if input != "" {
			if err := json.Unmarshal([]byte(input), &arg); err != nil {
				return fmt.Errorf("--input is not JSON: %w", err)
			}
		}
		return nil
	}); !ok {
		return rc
	}
	cl, err := c.dial(nil)
	if err != nil {
		return die("signal", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if input == "" {
		err = cl.SignalWorkflow(ctx, wid, rid, name, nil)
	} else {
		err = cl.SignalWorkflow(ctx, wid, rid, name, arg)
	}
	if err != nil {
		return die("signal", err)
	}
	return 0
}
