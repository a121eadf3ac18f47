package audit_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// withPrincipal stands in for the frontend's authentication: it puts p
// (when not nil) in the request's context.
func withPrincipal(h http.Handler, p *gateway.Principal) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p != nil {
			r = r.WithContext(gateway.WithPrincipal(r.Context(), *p))
		}
		h.ServeHTTP(w, r)
	})
}

func TestHandler(t *testing.T) {
	// The rows are placed relative to now, because ages ("7d") are.
	now := time.Now().UTC()
	recs := []*gateway.AuditRecord{
		{Time: now.Add(-10 * 24 * time.Hour), Principal: "alice", Backend: "github", Target: "search_issues", Method: "tools/call", Decision: "allow"},
		{Time: now.Add(-3 * 24 * time.Hour), Principal: "bob", Backend: "files", Target: "read_file", Method: "tools/call", Decision: "deny", Error: "=cmd"},
		{Time: now.Add(-time.Hour), Principal: "alice", Backend: "files", Target: "file:///srv/notes.md", Method: "resources/read", Decision: "allow", Approval: "apr_1"},
		{Time: now.Add(-30 * time.Minute), Principal: "carol", Method: "initialize", Decision: "allow"},
	}
	db, _ := openDB(t, sqlite.Options{})
	appendAll(t, db.Audit(), recs, 10)
	h := audit.Handler{Log: db.Audit()}

	auditor := &gateway.Principal{ID: "ann", Groups: []string{"dev", "auditor"}, TokenID: "tok_a"}
	admin := &gateway.Principal{ID: "root", Groups: []string{"admin"}, TokenID: "tok_r"}
	dev := &gateway.Principal{ID: "dave", Groups: []string{"dev", "auditors", "Admin"}, TokenID: "tok_d"}
	anonymous := &gateway.Principal{ID: "anonymous", Groups: []string{"admin"}, Anonymous: true}
	rfc := func(t time.Time) string { return url.QueryEscape(t.Format(time.RFC3339)) }

	tests := []struct {
		name       string
		principal  *gateway.Principal
		method     string // default GET
		target     string
		wantStatus int
		wantType   string
		// wantSeqs are the rows a 200 answer holds; wantError a part of
		// the error message of any other.
		wantSeqs  []int64
		wantError string
	}{
		{name: "auditor / the whole log as jsonl by default", principal: auditor, target: "/api/audit",
			wantStatus: 200, wantType: "application/jsonl; charset=utf-8", wantSeqs: []int64{1, 2, 3, 4}},
		{name: "auditor / format=csv gives csv", principal: auditor, target: "/api/audit?format=csv",
			wantStatus: 200, wantType: "text/csv; charset=utf-8", wantSeqs: []int64{1, 2, 3, 4}},
		{name: "auditor / format=jsonl gives jsonl", principal: auditor, target: "/api/audit?format=jsonl",
			wantStatus: 200, wantType: "application/jsonl; charset=utf-8", wantSeqs: []int64{1, 2, 3, 4}},
		{name: "admin / may read the log too", principal: admin, target: "/api/audit",
			wantStatus: 200, wantType: "application/jsonl; charset=utf-8", wantSeqs: []int64{1, 2, 3, 4}},
		{name: "forbidden / a principal in neither group (names differ only in case or plural)", principal: dev, target: "/api/audit",
			wantStatus: 403, wantError: "auditor or admin"},
		{name: "forbidden / an anonymous principal, whatever its groups", principal: anonymous, target: "/api/audit",
			wantStatus: 403, wantError: "auditor or admin"},
		{name: "forbidden / no principal at all", target: "/api/audit", wantStatus: 403, wantError: "auditor or admin"},
		{name: "forbidden / before any parameter is looked at", principal: dev, target: "/api/audit?since=nonsense&bogus=1",
			wantStatus: 403, wantError: "auditor or admin"},
		{name: "bad request / an unknown parameter", principal: auditor, target: "/api/audit?limit=5",
			wantStatus: 400, wantError: `unknown parameter "limit"`},
		{name: "bad request / a since that is no time", principal: auditor, target: "/api/audit?since=yesterday",
			wantStatus: 400, wantError: "since:"},
		{name: "bad request / an until that is no time", principal: auditor, target: "/api/audit?until=2026-02-30",
			wantStatus: 400, wantError: "until:"},
		{name: "bad request / an unknown format", principal: auditor, target: "/api/audit?format=xlsx",
			wantStatus: 400, wantError: "xlsx"},
		{name: "method / POST is not allowed", principal: auditor, method: "POST", target: "/api/audit",
			wantStatus: 405, wantError: "method not allowed"},
		{name: "method / DELETE is not allowed", principal: admin, method: "DELETE", target: "/api/audit",
			wantStatus: 405, wantError: "method not allowed"},
		{name: "path / another path is not found", principal: auditor, target: "/api/audit/1", wantStatus: 404, wantError: "not found"},
		{name: "path / a longer name is not found", principal: auditor, target: "/api/audits", wantStatus: 404, wantError: "not found"},
		{name: "filter / principal", principal: auditor, target: "/api/audit?principal=alice", wantStatus: 200, wantSeqs: []int64{1, 3}},
		{name: "filter / approval", principal: auditor, target: "/api/audit?approval=apr_1", wantStatus: 200, wantSeqs: []int64{3}},
		{name: "filter / an approval nobody has", principal: auditor, target: "/api/audit?approval=apr_2", wantStatus: 200, wantSeqs: nil},
		{name: "filter / backend", principal: auditor, target: "/api/audit?backend=files", wantStatus: 200, wantSeqs: []int64{2, 3}},
		{name: "filter / tool", principal: auditor, target: "/api/audit?tool=search_issues", wantStatus: 200, wantSeqs: []int64{1}},
		{name: "filter / tool matches a resource URI too", principal: auditor, target: "/api/audit?tool=" + url.QueryEscape("file:///srv/notes.md"),
			wantStatus: 200, wantSeqs: []int64{3}},
		{name: "filter / method", principal: auditor, target: "/api/audit?method=initialize", wantStatus: 200, wantSeqs: []int64{4}},
		{name: "filter / decision", principal: auditor, target: "/api/audit?decision=deny", wantStatus: 200, wantSeqs: []int64{2}},
		{name: "filter / since an RFC 3339 time", principal: auditor, target: "/api/audit?since=" + rfc(now.Add(-48*time.Hour)),
			wantStatus: 200, wantSeqs: []int64{3, 4}},
		{name: "filter / until an RFC 3339 time (exclusive)", principal: auditor, target: "/api/audit?until=" + rfc(now.Add(-48*time.Hour)),
			wantStatus: 200, wantSeqs: []int64{1, 2}},
		{name: "filter / since a date", principal: auditor, target: "/api/audit?since=" + now.Add(-5*24*time.Hour).Format(time.DateOnly),
			wantStatus: 200, wantSeqs: []int64{2, 3, 4}},
		{name: "filter / since an age in days", principal: auditor, target: "/api/audit?since=7d", wantStatus: 200, wantSeqs: []int64{2, 3, 4}},
		{name: "filter / since an age in hours", principal: auditor, target: "/api/audit?since=2h", wantStatus: 200, wantSeqs: []int64{3, 4}},
		{name: "filter / until an age", principal: auditor, target: "/api/audit?until=45m", wantStatus: 200, wantSeqs: []int64{1, 2, 3}},
		{name: "filter / several at once", principal: auditor, target: "/api/audit?principal=alice&since=7d&format=csv",
			wantStatus: 200, wantType: "text/csv; charset=utf-8", wantSeqs: []int64{3}},
		{name: "filter / nothing matches: an empty export", principal: auditor, target: "/api/audit?principal=mallory",
			wantStatus: 200, wantSeqs: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			rec := httptest.NewRecorder()
			withPrincipal(h, tt.principal).ServeHTTP(rec, httptest.NewRequest(method, tt.target, nil))
			resp := rec.Result()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if tt.wantStatus != 200 {
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error, tt.wantError) {
					t.Errorf("body %s, want a JSON error mentioning %q", body, tt.wantError)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("error Content-Type %q", ct)
				}
				if tt.wantStatus == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
					t.Errorf("Allow %q, want GET, HEAD", resp.Header.Get("Allow"))
				}
				return
			}
			if tt.wantType != "" && resp.Header.Get("Content-Type") != tt.wantType {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tt.wantType)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if got := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(got, "attachment;") {
				t.Errorf("Content-Disposition %q, want an attachment", got)
			}
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") != strings.HasPrefix(string(body), "seq,time,") {
				t.Errorf("the body does not match its Content-Type %s: %.40q", resp.Header.Get("Content-Type"), body)
			}
			var got []int64
			if len(body) > 0 { // an empty jsonl export is no bytes at all
				for _, r := range readAll(t, body) {
					if r.Hash != r.ComputeHash() {
						t.Errorf("row %d served with a hash that does not match", r.Seq)
					}
					if r.Method != "sallyport/audit.export" { // earlier subtests' exports
						got = append(got, r.Seq)
					}
				}
			}
			// The export itself is on record, before the rows were read.
			all := rows(t, db.Audit(), gateway.AuditFilter{})
			if last := all[len(all)-1]; last.Method != "sallyport/audit.export" || last.Principal == "" || last.Target != "/api/audit" {
				t.Errorf("the last row is %+v, want the record of this export", last)
			}
			if !reflect.DeepEqual(got, tt.wantSeqs) {
				t.Errorf("rows %v, want %v", got, tt.wantSeqs)
			}
		})
	}

	t.Run("HEAD / answers with the headers and no body", func(t *testing.T) {
		rec := httptest.NewRecorder()
		withPrincipal(h, auditor).ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/api/audit?format=csv", nil))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/csv; charset=utf-8" || rec.Body.Len() != 0 {
			t.Errorf("HEAD: status %d, Content-Type %q, %d bytes of body", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
		}
	})
}

func TestHandlerCutsTheConnectionWhenTheLogFails(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	appendAll(t, db.Audit(), synthetic(10), 10)
	srv := httptest.NewServer(withPrincipal(audit.Handler{Log: db.Audit()}, &gateway.Principal{ID: "ann", Groups: []string{"auditor"}}))
	defer srv.Close()
	db.Close()
	resp, err := srv.Client().Get(srv.URL + "/api/audit")
	if err == nil {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The export cannot even be recorded: 503, never a 200.
		if rerr == nil && resp.StatusCode == http.StatusOK {
			t.Errorf("a failed export was answered as complete: status %d, %d bytes", resp.StatusCode, len(body))
		}
	}
}

func TestParseFilter(t *testing.T) {
	now := time.Date(2026, 3, 15, 10, 30, 0, 0, time.UTC)
	tests := []struct {
		name    string
		params  map[string]string
		want    gateway.AuditFilter
		wantErr string
	}{
		{name: "no parameters select everything", want: gateway.AuditFilter{}},
		{name: "text parameters are taken as they are, tool naming the target",
			params: map[string]string{"principal": "alice", "backend": "github", "tool": "search_issues", "method": "tools/call", "decision": "deny",
				"approval": "apr_0123"},
			want: gateway.AuditFilter{Principal: "alice", Backend: "github", Target: "search_issues", Method: "tools/call", Decision: "deny",
				Approval: "apr_0123"}},
		{name: "since an RFC 3339 time in UTC", params: map[string]string{"since": "2026-03-01T08:00:00Z"},
			want: gateway.AuditFilter{Since: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}},
		{name: "since an RFC 3339 time with an offset", params: map[string]string{"since": "2026-03-01T08:00:00+02:00"},
			want: gateway.AuditFilter{Since: time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)}},
		{name: "until an RFC 3339 time with fractional seconds", params: map[string]string{"until": "2026-03-01T08:00:00.123456Z"},
			want: gateway.AuditFilter{Until: time.Date(2026, 3, 1, 8, 0, 0, 123456000, time.UTC)}},
		{name: "a date is UTC midnight", params: map[string]string{"since": "2026-03-01", "until": "2026-03-02"},
			want: gateway.AuditFilter{Since: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}},
		{name: "an age in days is that long before now", params: map[string]string{"since": "7d"},
			want: gateway.AuditFilter{Since: now.Add(-7 * 24 * time.Hour)}},
		{name: "an age in hours", params: map[string]string{"since": "36h"},
			want: gateway.AuditFilter{Since: now.Add(-36 * time.Hour)}},
		{name: "an age in days and hours", params: map[string]string{"until": "1d12h"},
			want: gateway.AuditFilter{Until: now.Add(-36 * time.Hour)}},
		{name: "an age in minutes", params: map[string]string{"until": "90m"},
			want: gateway.AuditFilter{Until: now.Add(-90 * time.Minute)}},
		{name: "a word is not a time", params: map[string]string{"since": "yesterday"}, wantErr: `since: "yesterday" is not an RFC 3339 time`},
		{name: "an impossible date is not a time", params: map[string]string{"until": "2026-02-30"}, wantErr: "until:"},
		{name: "a zero age is refused", params: map[string]string{"since": "0d"}, wantErr: "since:"},
		{name: "a negative age is refused", params: map[string]string{"since": "-7d"}, wantErr: "since:"},
		{name: "a number without unit is refused", params: map[string]string{"since": "7"}, wantErr: "since:"},
		{name: "an RFC 3339 time without zone is refused", params: map[string]string{"since": "2026-03-01T08:00:00"}, wantErr: "since:"},
		{name: "a bad until is named even when since is good", params: map[string]string{"since": "7d", "until": "soon"}, wantErr: "until:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := audit.ParseFilter(func(name string) string { return tt.params[name] }, now)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), strings.SplitN(tt.wantErr, " ", 2)[0]) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseFilter error %v, want one starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFilter: %v", err)
			}
			if !got.Since.Equal(tt.want.Since) || !got.Until.Equal(tt.want.Until) {
				t.Errorf("since %v until %v, want %v and %v", got.Since, got.Until, tt.want.Since, tt.want.Until)
			}
			got.Since, got.Until, tt.want.Since, tt.want.Until = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("filter %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("only the documented parameters are asked for", func(t *testing.T) {
		var asked []string
		audit.ParseFilter(func(name string) string { asked = append(asked, name); return "" }, now)
		for _, name := range asked {
			if !strings.Contains(" "+strings.Join(audit.FilterParams, " ")+" ", " "+name+" ") {
				t.Errorf("ParseFilter asked for %q, which is not in FilterParams", name)
			}
		}
		if len(asked) != len(audit.FilterParams) {
			t.Errorf("ParseFilter asked for %v, want each of %v", asked, audit.FilterParams)
		}
	})
}
