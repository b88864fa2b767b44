// Command actions-conformance drives a GitHub Actions service through every
// call ARC 0.14.0's controller and listener make, with the client and listener
// loop ARC 0.14.0 is built on (github.com/actions/scaleset v0.2.0), and prints
// one JSON report on stdout. It exits 0 only when every check holds.
//
// It is written for flywheel-runtime's Actions service double: the jobs it
// needs are queued through the double's control surface (/_flywheel/jobs), and
// the runners the scaler starts are played by goroutines speaking the double's
// runner API (/_flywheel/runner/{jit}/acquire, started, completed), as the
// project's runner stand-in does in a pod.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/actions/scaleset"
	"github.com/actions/scaleset/listener"
	"github.com/google/uuid"
)

type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

type messageRecord struct {
	ID            int      `json:"id"`
	Types         []string `json:"types"`
	TotalAssigned int      `json:"totalAssignedJobs"`
	TotalRunning  int      `json:"totalRunningJobs"`
}

type report struct {
	OK       bool            `json:"ok"`
	Checks   []check         `json:"checks"`
	Messages []messageRecord `json:"messages"`
	Acks     []int           `json:"acks"`
	Desired  []int           `json:"desired"`
	Empty202 float64         `json:"emptyPollSeconds"`
}

type run struct {
	mu  sync.Mutex
	rep report
}

func (r *run) add(name string, ok bool, format string, args ...any) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.Checks = append(r.rep.Checks, check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	return ok
}

// errText keeps a failed check's detail to one readable line.
func errText(err error) string {
	if err == nil {
		return "no error"
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// control speaks the double's own HTTP surface (not part of the GitHub API).
type control struct {
	base string
	http *http.Client
}

func (c *control) post(ctx context.Context, path string, body any) (int, map[string]any, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(data))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			return resp.StatusCode, nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return resp.StatusCode, out, nil
}

func (c *control) queue(ctx context.Context, label string, hold bool) (string, error) {
	code, out, err := c.post(ctx, "/_flywheel/jobs", map[string]any{"label": label, "count": 1, "hold": hold})
	if err != nil {
		return "", err
	}
	jobs, _ := out["jobs"].([]any)
	if code != http.StatusCreated || len(jobs) != 1 {
		return "", fmt.Errorf("queue %s: status %d, %v", label, code, out)
	}
	job, _ := jobs[0].(map[string]any)
	id, _ := job["id"].(float64)
	return strconv.Itoa(int(id)), nil
}

func (c *control) get(ctx context.Context, path string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]any{}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", path, resp.StatusCode)
	}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// waitReported: the held job's runner has reported its result, and the job is still started.
func (c *control) waitReported(ctx context.Context, jobID string, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		out, err := c.get(ctx, "/_flywheel/jobs/"+jobID)
		if err != nil {
			return false
		}
		job, _ := out["job"].(map[string]any)
		if reported, _ := job["reported_result"].(string); reported != "" {
			return job["state"] == "started"
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func jobState(out map[string]any) string {
	job, _ := out["job"].(map[string]any)
	state, _ := job["state"].(string)
	return state
}

// runner plays one runner pod: take the job, report it started on a node, complete it.
func (c *control) runner(ctx context.Context, jit string, done chan<- error) {
	base := "/_flywheel/runner/" + jit
	for {
		code, _, err := c.post(ctx, base+"/acquire?wait=5", map[string]any{})
		if err != nil {
			done <- fmt.Errorf("acquire: %w", err)
			return
		}
		if code == http.StatusOK {
			break
		}
		if code != http.StatusNoContent {
			done <- fmt.Errorf("acquire: status %d", code)
			return
		}
	}
	if code, _, err := c.post(ctx, base+"/started", map[string]any{"node": "conformance-node"}); err != nil || code != http.StatusOK {
		done <- fmt.Errorf("started: status %d, %v", code, err)
		return
	}
	for {
		code, out, err := c.post(ctx, base+"/completed", map[string]any{"result": "succeeded", "wait": 5})
		if err != nil || code != http.StatusOK {
			done <- fmt.Errorf("completed: status %d, %v", code, err)
			return
		}
		if jobState(out) == "completed" {
			done <- nil
			return
		}
	}
}

// recordingClient is the listener's client with every message and ack recorded.
type recordingClient struct {
	inner *scaleset.MessageSessionClient
	r     *run
}

func (rc *recordingClient) GetMessage(ctx context.Context, lastMessageID, maxCapacity int) (*scaleset.RunnerScaleSetMessage, error) {
	msg, err := rc.inner.GetMessage(ctx, lastMessageID, maxCapacity)
	if err != nil || msg == nil {
		return msg, err
	}
	rec := messageRecord{ID: msg.MessageID}
	for range msg.JobAssignedMessages {
		rec.Types = append(rec.Types, "JobAssigned")
	}
	for range msg.JobStartedMessages {
		rec.Types = append(rec.Types, "JobStarted")
	}
	for range msg.JobCompletedMessages {
		rec.Types = append(rec.Types, "JobCompleted")
	}
	if msg.Statistics != nil {
		rec.TotalAssigned = msg.Statistics.TotalAssignedJobs
		rec.TotalRunning = msg.Statistics.TotalRunningJobs
	}
	rc.r.mu.Lock()
	rc.r.rep.Messages = append(rc.r.rep.Messages, rec)
	rc.r.mu.Unlock()
	return msg, nil
}

func (rc *recordingClient) DeleteMessage(ctx context.Context, messageID int) error {
	err := rc.inner.DeleteMessage(ctx, messageID)
	if err == nil {
		rc.r.mu.Lock()
		rc.r.rep.Acks = append(rc.r.rep.Acks, messageID)
		rc.r.mu.Unlock()
	}
	return err
}

func (rc *recordingClient) Session() scaleset.RunnerScaleSetSession { return rc.inner.Session() }

// scaler does what ARC's listener and controller do with the messages:
// desired = min(minRunners + assigned, maxRunners), a JIT runner per missing
// replica, the runner removed from the service once its job completed.
type scaler struct {
	r          *run
	client     *scaleset.Client
	ctl        *control
	scaleSetID int
	minRunners int
	maxRunners int
	heldJobID  string
	jobs       int // jobs queued: the loop ends once all completed and desired is back to minRunners
	cancel     context.CancelFunc

	mu        sync.Mutex
	started   int
	live      map[string]int // runner name -> runner id, until its job completed
	names     map[string]bool
	completed int
	runnerErr chan error
}

func (s *scaler) HandleDesiredRunnerCount(ctx context.Context, count int) (int, error) {
	desired := min(s.minRunners+count, s.maxRunners)
	s.r.mu.Lock()
	s.r.rep.Desired = append(s.r.rep.Desired, desired)
	s.r.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.live) < desired {
		s.started++
		name := fmt.Sprintf("conformance-runner-%d", s.started)
		cfg, err := s.client.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: name, WorkFolder: "_work"}, s.scaleSetID)
		if err != nil {
			s.r.add("generatejitconfig (scaler)", false, "%s", errText(err))
			return len(s.live), err
		}
		s.live[name] = cfg.Runner.ID
		s.names[name] = true
		go s.ctl.runner(context.WithoutCancel(ctx), cfg.EncodedJITConfig, s.runnerErr)
	}
	if s.completed == s.jobs && desired == s.minRunners {
		s.cancel()
	}
	return len(s.live), nil
}

func (s *scaler) HandleJobStarted(ctx context.Context, job *scaleset.JobStarted) error {
	s.mu.Lock()
	known := s.names[job.RunnerName]
	s.mu.Unlock()
	s.r.add("JobStarted names its runner", known && job.RunnerID > 0, "job %s on %q (id %d)", job.JobID, job.RunnerName, job.RunnerID)
	if job.JobID == s.heldJobID {
		// The controller's scale-down or finalizer removing a runner whose job runs.
		err := s.client.RemoveRunner(ctx, int64(job.RunnerID))
		s.r.add("remove runner while its job runs: JobStillRunning", errors.Is(err, scaleset.JobStillRunningError), "%s", errText(err))
		// Release once its runner reported the result (else the job ends "canceled").
		reported := s.ctl.waitReported(ctx, job.JobID, 30*time.Second)
		s.r.add("held job: the runner's report waits for the release", reported, "job %s", job.JobID)
		code, _, err := s.ctl.post(ctx, "/_flywheel/release", map[string]any{"ids": []int{atoi(job.JobID)}})
		s.r.add("release the held job", err == nil && code == http.StatusOK, "status %d, %s", code, errText(err))
	}
	return nil
}

func (s *scaler) HandleJobCompleted(ctx context.Context, job *scaleset.JobCompleted) error {
	s.r.add("JobCompleted carries result and runner", job.Result == "succeeded" && job.RunnerName != "" && job.RunnerID > 0,
		"job %s result %q on %q", job.JobID, job.Result, job.RunnerName)
	// ARC: scale-down removes the runner, then the EphemeralRunner's finalizer removes it again.
	err1 := s.client.RemoveRunner(ctx, int64(job.RunnerID))
	err2 := s.client.RemoveRunner(ctx, int64(job.RunnerID))
	s.r.add("remove a finished runner twice: 204 both", err1 == nil && err2 == nil, "%s / %s", errText(err1), errText(err2))
	s.mu.Lock()
	delete(s.live, job.RunnerName)
	s.completed++
	s.mu.Unlock()
	return nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func main() {
	configURL := flag.String("config-url", "", "githubConfigUrl: http://HOST:PORT/ORG of the service")
	controlURL := flag.String("control", "", "the double's base URL for /_flywheel (default: the config URL's scheme and host)")
	label := flag.String("label", "flywheel-conformance", "the scale set's name and label")
	timeout := flag.Duration("timeout", 120*time.Second, "bound on the whole run")
	flag.Parse()
	if *configURL == "" {
		fmt.Fprintln(os.Stderr, "actions-conformance: -config-url is required")
		os.Exit(2)
	}
	if *controlURL == "" {
		u, err := url.Parse(*configURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "actions-conformance:", err)
			os.Exit(2)
		}
		*controlURL = u.Scheme + "://" + u.Host
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r := &run{}
	conform(ctx, r, *configURL, strings.TrimRight(*controlURL, "/"), *label)
	r.rep.OK = len(r.rep.Checks) > 0
	for _, c := range r.rep.Checks {
		r.rep.OK = r.rep.OK && c.OK
	}
	out, _ := json.MarshalIndent(r.rep, "", "  ")
	fmt.Println(string(out))
	if !r.rep.OK {
		os.Exit(1)
	}
}

func conform(ctx context.Context, r *run, configURL, controlURL, label string) {
	// Fail fast: the double answers errors with 4xx; retries only hide a 5xx.
	opts := []scaleset.HTTPOption{scaleset.WithRetryMax(1), scaleset.WithRetryWaitMax(time.Second)}
	client, err := scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
		GitHubConfigURL:     configURL,
		PersonalAccessToken: "flywheel-conformance-pat",
		SystemInfo:          scaleset.SystemInfo{System: "flywheel-conformance", Version: "0.14.0", Subsystem: "controller"},
	}, opts...)
	if !r.add("client from githubConfigUrl", err == nil, "%s", errText(err)) {
		return
	}
	ctl := &control{base: controlURL, http: &http.Client{Timeout: 30 * time.Second}}

	// --- controller: auth, runner group, scale-set CRUD --------------------
	set, err := client.GetRunnerScaleSet(ctx, 1, label)
	if !r.add("registration token, admin JWT, scale set by name (absent)", err == nil && set == nil, "%v %s", set, errText(err)) {
		return
	}
	group, err := client.GetRunnerGroupByName(ctx, "flywheel-conformance-group")
	if !r.add("runner group by name", err == nil && group != nil && group.ID > 1, "%+v %s", group, errText(err)) {
		return
	}
	created, err := client.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{
		Name: label, RunnerGroupID: 1, Labels: []scaleset.Label{{Name: label}},
		RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true},
	})
	if !r.add("create scale set: 200 with id", err == nil && created.ID > 0 && created.Name == label && created.RunnerGroupName != "",
		"%+v %s", created, errText(err)) {
		return
	}
	id := created.ID
	got, err := client.GetRunnerScaleSet(ctx, 1, label)
	r.add("scale set by name", err == nil && got != nil && got.ID == id, "%+v %s", got, errText(err))
	byID, err := client.GetRunnerScaleSetByID(ctx, id)
	r.add("scale set by id", err == nil && byID != nil && byID.Name == label, "%+v %s", byID, errText(err))
	updated, err := client.UpdateRunnerScaleSet(ctx, id, &scaleset.RunnerScaleSet{
		Name: label, RunnerGroupID: group.ID, Labels: []scaleset.Label{{Name: label}},
	})
	r.add("update scale set (regroup)", err == nil && updated.ID == id && updated.RunnerGroupID == group.ID && updated.RunnerGroupName == group.Name,
		"%+v %s", updated, errText(err))
	moved, err := client.GetRunnerScaleSet(ctx, group.ID, label)
	r.add("scale set by name in its new group", err == nil && moved != nil && moved.ID == id, "%+v %s", moved, errText(err))

	// --- controller: JIT runner, lookup, removal ---------------------------
	idle := "conformance-idle-runner"
	jit, err := client.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: idle, WorkFolder: "_work"}, id)
	if r.add("generatejitconfig", err == nil && jit.Runner != nil && jit.Runner.ID > 0 && jit.Runner.Name == idle &&
		jit.Runner.RunnerScaleSetID == id && jit.EncodedJITConfig != "", "%s", errText(err)) {
		_, err = client.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: idle, WorkFolder: "_work"}, id)
		r.add("generatejitconfig for an existing name: AgentExists", errors.Is(err, scaleset.RunnerExistsError), "%s", errText(err))
		ref, err := client.GetRunnerByName(ctx, idle)
		r.add("runner by name", err == nil && ref != nil && ref.ID == jit.Runner.ID, "%+v %s", ref, errText(err))
		ref, err = client.GetRunner(ctx, jit.Runner.ID)
		r.add("runner by id", err == nil && ref != nil && ref.Name == idle, "%+v %s", ref, errText(err))
		err1 := client.RemoveRunner(ctx, int64(jit.Runner.ID))
		err2 := client.RemoveRunner(ctx, int64(jit.Runner.ID))
		r.add("remove an idle runner twice: 204 both", err1 == nil && err2 == nil, "%s / %s", errText(err1), errText(err2))
		ref, err = client.GetRunnerByName(ctx, idle)
		r.add("runner by name after removal: none", err == nil && ref == nil, "%+v %s", ref, errText(err))
	}

	// --- GitHub App auth (the chart's github_app_* keys): installation token first
	if key, err := rsa.GenerateKey(rand.Reader, 2048); r.add("RSA key for the app", err == nil, "%s", errText(err)) {
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		app, err := scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
			GitHubConfigURL: configURL,
			GitHubAppAuth:   scaleset.GitHubAppAuth{ClientID: "12345", InstallationID: 678, PrivateKey: string(pemKey)},
			SystemInfo:      scaleset.SystemInfo{System: "flywheel-conformance", Version: "0.14.0", Subsystem: "controller"},
		}, opts...)
		if r.add("GitHub App client", err == nil, "%s", errText(err)) {
			g, err := app.GetRunnerGroupByName(ctx, "Default")
			r.add("GitHub App auth: installation token, registration token, admin JWT", err == nil && g != nil && g.ID == 1,
				"%+v %s", g, errText(err))
		}
	}

	// --- listener: session, queue, messages, acks ---------------------------
	lclient, err := scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
		GitHubConfigURL:     configURL,
		PersonalAccessToken: "flywheel-conformance-pat",
		SystemInfo:          scaleset.SystemInfo{System: "flywheel-conformance", Version: "0.14.0", Subsystem: "listener", ScaleSetID: id},
	}, opts...)
	if !r.add("listener client", err == nil, "%s", errText(err)) {
		return
	}
	session, err := lclient.MessageSessionClient(ctx, id, "conformance-listener")
	if !r.add("create message session", err == nil, "%s", errText(err)) {
		return
	}
	s := session.Session()
	qu, perr := url.Parse(s.MessageQueueURL)
	r.add("session: id, statistics, absolute queue URL, token",
		s.SessionID != uuid.Nil && s.Statistics != nil && perr == nil && qu.IsAbs() && qu.Host != "" &&
			s.MessageQueueAccessToken != "" && s.RunnerScaleSet != nil && s.RunnerScaleSet.ID == id,
		"queue %q", s.MessageQueueURL)

	t0 := time.Now()
	msg, err := session.GetMessage(ctx, 0, 2)
	r.rep.Empty202 = time.Since(t0).Seconds()
	r.add("empty queue: 202 within 5 s", err == nil && msg == nil && r.rep.Empty202 < 5, "%.2f s %s", r.rep.Empty202, errText(err))

	// The service expires queue tokens: the client must get a 401 and refresh (PATCH) the session.
	code, _, err := ctl.post(ctx, "/_flywheel/sessions/expire", map[string]any{})
	if r.add("expire queue tokens (control)", err == nil && code == http.StatusOK, "status %d %s", code, errText(err)) {
		old := s.MessageQueueAccessToken
		msg, err = session.GetMessage(ctx, 0, 2)
		fresh := session.Session()
		r.add("401 on the queue: session refreshed", err == nil && msg == nil && fresh.MessageQueueAccessToken != old &&
			fresh.SessionID == s.SessionID, "%s", errText(err))
	}

	plain, err := ctl.queue(ctx, label, false)
	if !r.add("queue a job (control)", err == nil, "%s", errText(err)) {
		return
	}
	held, err := ctl.queue(ctx, label, true)
	if !r.add("queue a held job (control)", err == nil, "%s", errText(err)) {
		return
	}
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	sc := &scaler{
		r: r, client: client, ctl: ctl, scaleSetID: id, minRunners: 0, maxRunners: 2, heldJobID: held, jobs: 2,
		cancel: lcancel, live: map[string]int{}, names: map[string]bool{}, runnerErr: make(chan error, 8),
	}
	rc := &recordingClient{inner: session, r: r}
	l, err := listener.New(rc, listener.Config{ScaleSetID: id, MaxRunners: sc.maxRunners})
	if !r.add("listener", err == nil, "%s", errText(err)) {
		return
	}
	err = l.Run(lctx, sc)
	r.add("listener loop ends once both jobs completed", errors.Is(err, context.Canceled) && ctx.Err() == nil && sc.completed == 2,
		"%s (plain job %s, held job %s, completed %d)", errText(err), plain, held, sc.completed)
	for i := 0; i < sc.started; i++ {
		select {
		case rerr := <-sc.runnerErr:
			r.add("runner: acquire, started, completed", rerr == nil, "%s", errText(rerr))
		case <-time.After(10 * time.Second):
			r.add("runner: acquire, started, completed", false, "runner %d never finished", i+1)
		}
	}
	r.checkMessages(sc)

	err = session.Close(ctx)
	r.add("delete message session: 204", err == nil, "%s", errText(err))
	err = client.DeleteRunnerScaleSet(ctx, id)
	r.add("delete scale set: 204", err == nil, "%s", errText(err))
	gone, err := client.GetRunnerScaleSet(ctx, group.ID, label)
	r.add("scale set by name after deletion: none", err == nil && gone == nil, "%+v %s", gone, errText(err))
}

func (r *run) checkMessages(sc *scaler) {
	r.mu.Lock()
	msgs := append([]messageRecord(nil), r.rep.Messages...)
	acks := append([]int(nil), r.rep.Acks...)
	desired := append([]int(nil), r.rep.Desired...)
	r.mu.Unlock()
	counts := map[string]int{}
	maxAssigned, ids := 0, map[int]bool{}
	for _, m := range msgs {
		for _, t := range m.Types {
			counts[t]++
		}
		maxAssigned = max(maxAssigned, m.TotalAssigned)
		ids[m.ID] = true
	}
	r.add("messages: JobAssigned, JobStarted, JobCompleted for each job",
		counts["JobAssigned"] == 2 && counts["JobStarted"] == 2 && counts["JobCompleted"] == 2, "%v", counts)
	acked := len(acks) == len(ids)
	for _, a := range acks {
		acked = acked && ids[a]
	}
	r.add("every message acked once", acked && len(msgs) > 0, "messages %d, acks %v", len(msgs), acks)
	last := -1
	if len(msgs) > 0 {
		last = msgs[len(msgs)-1].TotalAssigned
	}
	r.add("statistics: totalAssignedJobs rises to 2 and returns to 0", maxAssigned == 2 && last == 0,
		"max %d, last %d", maxAssigned, last)
	peak := 0
	for _, d := range desired {
		peak = max(peak, d)
	}
	r.add("desired runners: min(minRunners + assigned, maxRunners) up to 2 and back to 0",
		len(desired) > 2 && desired[0] == 0 && peak == 2 && desired[len(desired)-1] == 0 && sc.started == 2,
		"%v (runners started %d)", desired, sc.started)
}
