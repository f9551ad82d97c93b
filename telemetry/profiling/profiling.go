package profiling

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grafana/pyroscope-go"
	"github.com/workerscope/workerscope/internal/faillog"
)

// Profiling defaults.
const (
	defaultUploadInterval        = 15 * time.Second
	defaultMutexProfileFraction  = 5         // report 1 in 5 mutex contention events
	defaultBlockProfileRate      = 1_000_000 // ns: one sample per ms spent blocked
	defaultMaxUploadTimeout      = 10 * time.Second
	minUploadInterval            = time.Second
	uploadErrorSummaryInterval   = time.Minute
	maxUploadResponseBodyInBytes = 4 << 10
)

// profileTypeNames maps every accepted PYROSCOPE_PROFILE_TYPES entry to the
// client's types. Heap, mutex and block each ship as one profile holding all
// their sample types, so any one of a group turns the whole group on.
var profileTypeNames = map[string][]pyroscope.ProfileType{
	"cpu":            {pyroscope.ProfileCPU},
	"alloc_objects":  {pyroscope.ProfileAllocObjects},
	"alloc_space":    {pyroscope.ProfileAllocSpace},
	"inuse_objects":  {pyroscope.ProfileInuseObjects},
	"inuse_space":    {pyroscope.ProfileInuseSpace},
	"goroutines":     {pyroscope.ProfileGoroutines},
	"goroutine":      {pyroscope.ProfileGoroutines},
	"mutex_count":    {pyroscope.ProfileMutexCount},
	"mutex_duration": {pyroscope.ProfileMutexDuration},
	"block_count":    {pyroscope.ProfileBlockCount},
	"block_duration": {pyroscope.ProfileBlockDuration},
	"heap":           {pyroscope.ProfileAllocObjects, pyroscope.ProfileAllocSpace, pyroscope.ProfileInuseObjects, pyroscope.ProfileInuseSpace},
	"mutex":          {pyroscope.ProfileMutexCount, pyroscope.ProfileMutexDuration},
	"block":          {pyroscope.ProfileBlockCount, pyroscope.ProfileBlockDuration},
}

// allProfileTypes is the default: every type above.
var allProfileTypes = []pyroscope.ProfileType{
	pyroscope.ProfileCPU,
	pyroscope.ProfileAllocObjects, pyroscope.ProfileAllocSpace,
	pyroscope.ProfileInuseObjects, pyroscope.ProfileInuseSpace,
	pyroscope.ProfileGoroutines,
	pyroscope.ProfileMutexCount, pyroscope.ProfileMutexDuration,
	pyroscope.ProfileBlockCount, pyroscope.ProfileBlockDuration,
}

// Options configures Start. Everything not set here comes
// from the PYROSCOPE_* environment, following the Pyroscope agents'
// conventions:
//
//	PYROSCOPE_SERVER_ADDRESS          on when set, e.g. https://profiles-prod-001.grafana.net
//	PYROSCOPE_APPLICATION_NAME        default: DefaultApplicationName (the OTel service name)
//	PYROSCOPE_BASIC_AUTH_USER         Grafana Cloud: the stack's Profiles instance ID
//	PYROSCOPE_BASIC_AUTH_PASSWORD     Grafana Cloud: an access-policy token
//	PYROSCOPE_TENANT_ID               sent as X-Scope-OrgID (multi-tenant Pyroscope)
//	PYROSCOPE_UPLOAD_INTERVAL         default 15s
//	PYROSCOPE_PROFILE_TYPES           comma list; default all types
//	PYROSCOPE_MUTEX_PROFILE_FRACTION  default 5; 0 turns mutex profiling off
//	PYROSCOPE_BLOCK_PROFILE_RATE      ns (or a duration); default 1000000 (1ms); 0 turns block profiling off
type Options struct {
	// Getenv reads the environment. Required.
	Getenv func(string) string
	// ServerAddress and ApplicationName override their environment
	// variables (flags).
	ServerAddress   string
	ApplicationName string
	// DefaultApplicationName is used when neither the option nor
	// PYROSCOPE_APPLICATION_NAME is set: pass the OTel service.name.
	// Default OTEL_SERVICE_NAME, then "workerscope".
	DefaultApplicationName string
	// Version, InstanceID and Hostname become the tags service_version,
	// service_instance_id and host. InstanceID should be the OTel
	// resource's service.instance.id so metrics and profiles line up.
	// Hostname defaults to os.Hostname. There are deliberately no
	// per-session or per-pid tags.
	Version    string
	InstanceID string
	Hostname   string
	Logger     *slog.Logger
	// UploadTimeout bounds one upload request. Default: the upload
	// interval, at least 1s and at most 10s.
	UploadTimeout time.Duration
}

// config is the resolved configuration.
type config struct {
	ServerAddress        string // without credentials
	ApplicationName      string
	Tags                 map[string]string
	UploadInterval       time.Duration
	UploadTimeout        time.Duration
	ProfileTypes         []pyroscope.ProfileType
	MutexProfileFraction int
	BlockProfileRate     int
	TenantID             string
	BasicAuthUser        string
	basicAuthPassword    string // never logged
}

// Profiler is continuous profiling to a Pyroscope server. The zero value
// and a nil *Profiler are valid and off: every method works on them.
type Profiler struct {
	settings config
	prof     *pyroscope.Profiler
	log      *slog.Logger
	uploads  *faillog.Log
	cancel   context.CancelFunc // aborts in-flight and queued uploads
	cpu      bool
	restore  func()

	stopOnce sync.Once
	done     chan struct{} // closed when the client has stopped
}

// Start starts continuous profiling when a server address is set
// (option or PYROSCOPE_SERVER_ADDRESS), and otherwise returns a Profiler
// that is off. Invalid settings yield an error naming the variable.
func Start(opts Options) (*Profiler, error) {
	if opts.Getenv == nil {
		return nil, errors.New("profiling: Options.Getenv is nil")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return &Profiler{}, nil
	}

	ctx, cancel := context.WithCancel(context.Background())
	p := &Profiler{
		settings: *s,
		log:      opts.Logger,
		cancel:   cancel,
		cpu:      slices.Contains(s.ProfileTypes, pyroscope.ProfileCPU),
		done:     make(chan struct{}),
	}
	p.uploads = newUploadLog(opts.Logger, s.ServerAddress, time.Now)
	client := &uploadClient{ctx: ctx, uploads: p.uploads, client: newUploadHTTPClient(s.UploadTimeout)}

	// The client does not turn mutex and block sampling on by itself.
	var restore []func()
	mutexOn := slices.Contains(s.ProfileTypes, pyroscope.ProfileMutexCount) || slices.Contains(s.ProfileTypes, pyroscope.ProfileMutexDuration)
	blockOn := slices.Contains(s.ProfileTypes, pyroscope.ProfileBlockCount) || slices.Contains(s.ProfileTypes, pyroscope.ProfileBlockDuration)
	if mutexOn {
		prev := runtime.SetMutexProfileFraction(s.MutexProfileFraction)
		restore = append(restore, func() { runtime.SetMutexProfileFraction(prev) })
	}
	if blockOn {
		runtime.SetBlockProfileRate(s.BlockProfileRate)
		// The runtime has no getter for the block rate: restore its default.
		restore = append(restore, func() { runtime.SetBlockProfileRate(0) })
	}
	p.restore = func() {
		for _, f := range restore {
			f()
		}
	}

	prof, err := pyroscope.Start(pyroscope.Config{
		ApplicationName:   s.ApplicationName,
		Tags:              s.Tags,
		ServerAddress:     s.ServerAddress,
		BasicAuthUser:     s.BasicAuthUser,
		BasicAuthPassword: s.basicAuthPassword,
		TenantID:          s.TenantID,
		UploadRate:        s.UploadInterval,
		Logger:            newPyroscopeLogger(opts.Logger, p.uploads, time.Now),
		ProfileTypes:      s.ProfileTypes,
		HTTPClient:        client,
	})
	if err != nil {
		cancel()
		p.restore()
		return nil, fmt.Errorf("profiling: pyroscope (PYROSCOPE_APPLICATION_NAME / tags): %w", err)
	}
	p.prof = prof

	types := make([]string, len(s.ProfileTypes))
	for i, t := range s.ProfileTypes {
		types[i] = string(t)
	}
	attrs := []any{"server", s.ServerAddress, "application", s.ApplicationName,
		"upload_interval", s.UploadInterval, "profile_types", strings.Join(types, ",")}
	if mutexOn {
		attrs = append(attrs, "mutex_profile_fraction", s.MutexProfileFraction)
	}
	if blockOn {
		attrs = append(attrs, "block_profile_rate_ns", s.BlockProfileRate)
	}
	if s.TenantID != "" {
		attrs = append(attrs, "tenant_id", s.TenantID)
	}
	if s.BasicAuthUser != "" {
		attrs = append(attrs, "basic_auth_user", s.BasicAuthUser)
	}
	p.log.Info("continuous profiling to Pyroscope on", attrs...)
	return p, nil
}

// resolve resolves opts and the environment; nil means off.
func resolve(opts Options) (*config, error) {
	env := func(k string) string { return strings.TrimSpace(opts.Getenv(k)) }
	addr := strings.TrimSpace(opts.ServerAddress)
	if addr == "" {
		addr = env("PYROSCOPE_SERVER_ADDRESS")
	}
	if addr == "" {
		return nil, nil
	}
	s := &config{
		UploadInterval:       defaultUploadInterval,
		ProfileTypes:         allProfileTypes,
		MutexProfileFraction: defaultMutexProfileFraction,
		BlockProfileRate:     defaultBlockProfileRate,
		TenantID:             env("PYROSCOPE_TENANT_ID"),
		BasicAuthUser:        env("PYROSCOPE_BASIC_AUTH_USER"),
		basicAuthPassword:    env("PYROSCOPE_BASIC_AUTH_PASSWORD"),
	}
	var errs []error
	bad := func(key, v, why string) { errs = append(errs, fmt.Errorf("profiling: invalid %s %q: %s", key, v, why)) }

	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("PYROSCOPE_SERVER_ADDRESS", redactURL(addr), "want an http:// or https:// URL such as https://profiles-prod-001.grafana.net")
	} else {
		if u.User != nil { // credentials in the URL: move them out so they are never logged
			if s.BasicAuthUser == "" && s.basicAuthPassword == "" {
				s.BasicAuthUser = u.User.Username()
				s.basicAuthPassword, _ = u.User.Password()
			}
			u.User = nil
		}
		u.RawQuery, u.Fragment = "", ""
		s.ServerAddress = strings.TrimSuffix(u.String(), "/")
	}
	switch {
	case s.BasicAuthUser != "" && s.basicAuthPassword == "":
		bad("PYROSCOPE_BASIC_AUTH_PASSWORD", "", "empty while PYROSCOPE_BASIC_AUTH_USER is set (both are needed)")
	case s.BasicAuthUser == "" && s.basicAuthPassword != "":
		bad("PYROSCOPE_BASIC_AUTH_USER", "", "empty while PYROSCOPE_BASIC_AUTH_PASSWORD is set (both are needed)")
	}

	if v := env("PYROSCOPE_UPLOAD_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < minUploadInterval {
			bad("PYROSCOPE_UPLOAD_INTERVAL", v, "want a duration of at least 1s, such as 15s")
		}
		s.UploadInterval = d
	}
	s.UploadTimeout = opts.UploadTimeout
	if s.UploadTimeout <= 0 {
		s.UploadTimeout = min(defaultMaxUploadTimeout, max(s.UploadInterval, time.Second))
	}

	if v := env("PYROSCOPE_PROFILE_TYPES"); v != "" {
		var types []pyroscope.ProfileType
		for _, name := range strings.Split(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			ts, ok := profileTypeNames[name]
			if !ok {
				bad("PYROSCOPE_PROFILE_TYPES", v, fmt.Sprintf("unknown type %q; want a comma list of cpu, alloc_objects, alloc_space, inuse_objects, inuse_space, goroutines, mutex_count, mutex_duration, block_count, block_duration (or heap, mutex, block)", name))
				continue
			}
			for _, t := range ts {
				if !slices.Contains(types, t) {
					types = append(types, t)
				}
			}
		}
		if len(types) == 0 && len(errs) == 0 {
			bad("PYROSCOPE_PROFILE_TYPES", v, "no profile types (unset PYROSCOPE_SERVER_ADDRESS to turn profiling off)")
		}
		s.ProfileTypes = types
	}
	if v := env("PYROSCOPE_MUTEX_PROFILE_FRACTION"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad("PYROSCOPE_MUTEX_PROFILE_FRACTION", v, "want an integer ≥ 0 (report 1 in n contention events; 0 turns mutex profiling off)")
		}
		s.MutexProfileFraction = n
	}
	if v := env("PYROSCOPE_BLOCK_PROFILE_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			d, derr := time.ParseDuration(v)
			n, err = int(d), derr
		}
		if err != nil || n < 0 {
			bad("PYROSCOPE_BLOCK_PROFILE_RATE", v, "want nanoseconds ≥ 0 or a duration such as 1ms (one sample per that much time blocked; 0 turns block profiling off)")
		}
		s.BlockProfileRate = n
	}
	if s.MutexProfileFraction == 0 {
		s.ProfileTypes = slices.DeleteFunc(slices.Clone(s.ProfileTypes), func(t pyroscope.ProfileType) bool {
			return t == pyroscope.ProfileMutexCount || t == pyroscope.ProfileMutexDuration
		})
	}
	if s.BlockProfileRate == 0 {
		s.ProfileTypes = slices.DeleteFunc(slices.Clone(s.ProfileTypes), func(t pyroscope.ProfileType) bool {
			return t == pyroscope.ProfileBlockCount || t == pyroscope.ProfileBlockDuration
		})
	}
	if len(s.ProfileTypes) == 0 && len(errs) == 0 {
		bad("PYROSCOPE_PROFILE_TYPES", env("PYROSCOPE_PROFILE_TYPES"), "no profile types left after the mutex/block rates of 0")
	}

	// Application name: flag, environment, then the OTel service name.
	name, key := strings.TrimSpace(opts.ApplicationName), "the application name"
	if name == "" {
		name, key = env("PYROSCOPE_APPLICATION_NAME"), "PYROSCOPE_APPLICATION_NAME"
	}
	if name != "" {
		base, _, _ := strings.Cut(name, "{") // agents accept app{tag=value,...}
		if base == "" || strings.IndexFunc(base, func(r rune) bool { return !appNameRune(r) }) >= 0 {
			bad(key, name, "want letters, digits and - . _ / (optionally followed by {tag=value,...})")
		}
	} else {
		name = opts.DefaultApplicationName
		if name == "" {
			name = env("OTEL_SERVICE_NAME")
		}
		name = strings.Map(func(r rune) rune {
			if appNameRune(r) {
				return r
			}
			return '_'
		}, strings.TrimSpace(name))
		if name == "" {
			name = "workerscope"
		}
	}
	s.ApplicationName = name

	host := opts.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	s.Tags = map[string]string{}
	for k, v := range map[string]string{"service_version": opts.Version, "host": host, "service_instance_id": opts.InstanceID} {
		if v = tagValue(v); v != "" {
			s.Tags[k] = v
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func appNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._/", r)
}

// tagValue makes v safe inside the ingest API's name{k=v,...} syntax, which
// has no escaping.
func tagValue(v string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune("{},=\"", r) || r <= ' ' {
			return '_'
		}
		return r
	}, strings.TrimSpace(v))
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.LastIndex(s, "@"); i >= 0 {
			return "REDACTED@" + s[i+1:]
		}
		return s
	}
	if u.User == nil {
		return s
	}
	u.User = url.User("REDACTED")
	return u.String()
}

// Enabled reports whether profiles are being uploaded.
func (p *Profiler) Enabled() bool { return p != nil && p.prof != nil }

// UploadErrors is the number of failed or dropped uploads so far.
func (p *Profiler) UploadErrors() uint64 {
	if !p.Enabled() {
		return 0
	}
	return p.uploads.Failures()
}

// finalErr describes uploads still failing at shutdown, or is nil.
func (p *Profiler) finalErr() error {
	if err := p.uploads.Err(); err != nil {
		return fmt.Errorf("profiling: Pyroscope uploads to %s were failing at shutdown (%w)", p.settings.ServerAddress, err)
	}
	return nil
}

// Stop uploads the last window of every profile type, then stops the
// client, within ctx's deadline. When the budget runs out (a server that
// accepts connections and never answers) it aborts the pending uploads,
// logs that the last upload was abandoned and returns ctx's error; the
// client finishes stopping in the background. It returns an error when
// uploads were failing at the end. Safe to call more than once and on a
// Profiler that is off.
func (p *Profiler) Stop(ctx context.Context) error {
	if !p.Enabled() {
		return nil
	}
	p.stopOnce.Do(func() { go p.shutdown() })
	select {
	case <-p.done:
		return p.finalErr()
	case <-ctx.Done():
		select {
		case <-p.done: // finished just in time
			return p.finalErr()
		default:
		}
		p.uploads.Mute()
		p.cancel()
		p.log.Warn("Pyroscope: shutdown budget ran out; the last profile upload was abandoned",
			"server", p.settings.ServerAddress, "err", ctx.Err())
		return fmt.Errorf("profiling: profiling stop: last upload abandoned: %w", ctx.Err())
	}
}

func (p *Profiler) shutdown() {
	defer close(p.done)
	// Stop alone drops the window since the last tick of every type but
	// CPU. Flush(true) uploads it and waits for the queue. The client's
	// Flush also flushes the CPU collector, which only runs when cpu is
	// on: without it Flush would block forever (pyroscope-go v1.5.0).
	if p.cpu {
		p.prof.Flush(true)
	}
	_ = p.prof.Stop()
	p.cancel()
	p.restore()
}

// uploadClient is the client's HTTP client: bounded request time, a
// context that Stop cancels to abandon uploads, a cap on the response body
// the client reads whole, and success tracking for the "recovered" log.
type uploadClient struct {
	ctx     context.Context
	client  *http.Client
	uploads *faillog.Log
}

func newUploadHTTPClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone() // proxy from the environment, dial and TLS timeouts
	tr.MaxConnsPerHost = 5                                // the client's upload goroutines
	tr.MaxIdleConnsPerHost = 5
	tr.DialContext = (&net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// As the client's own: a redirect would drop the Authorization header.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Do sends one upload and counts its outcome: a transport error or a
// status other than 200 is a failed upload, so failures are counted here,
// where they happen, not recognised in the client's log lines.
func (c *uploadClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.client.Do(req.WithContext(c.ctx))
	if err != nil {
		c.uploads.Failed(err.Error())
		return nil, err
	}
	resp.Body = limitedBody{io.LimitReader(resp.Body, maxUploadResponseBodyInBytes), resp.Body}
	if resp.StatusCode == http.StatusOK {
		c.uploads.Succeeded()
	} else {
		c.uploads.Failed("HTTP " + resp.Status)
	}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}
