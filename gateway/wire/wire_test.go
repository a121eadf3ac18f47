package wire

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

func TestLineReader(t *testing.T) {
	big := strings.Repeat("a", 200<<10) // longer than bufio's 64 KiB buffer and Scanner's limit
	in := "one\r\ntwo\n" + strings.Repeat("x", 2000) + "\n" + big + "\n\nlast"
	lr := NewLineReader(strings.NewReader(in), 256<<10)
	lr2 := NewLineReader(strings.NewReader("short\n"+strings.Repeat("y", 1000)+"\nafter\n"), 100)

	t.Run("lines of any size up to the limit are read whole", func(t *testing.T) {
		for _, want := range []string{"one", "two", strings.Repeat("x", 2000), big, "", "last"} {
			got, err := lr.ReadLine()
			if err != nil || string(got) != want {
				t.Fatalf("got %d bytes, %v; want %d bytes", len(got), err, len(want))
			}
		}
		if _, err := lr.ReadLine(); !errors.Is(err, io.EOF) {
			t.Fatalf("want EOF, got %v", err)
		}
	})
	t.Run("an oversized line is skipped and reading goes on", func(t *testing.T) {
		if l, _ := lr2.ReadLine(); string(l) != "short" {
			t.Fatal(string(l))
		}
		if _, err := lr2.ReadLine(); !errors.Is(err, ErrTooLong) {
			t.Fatalf("want ErrTooLong, got %v", err)
		}
		if l, _ := lr2.ReadLine(); string(l) != "after" {
			t.Fatalf("got %q", l)
		}
	})
}

func TestSSERoundTrip(t *testing.T) {
	rec := httptest.NewRecorder()
	w := NewSSEWriter(rec)
	w.Write(Event{ID: "1", Event: "message", Data: []byte(`{"a":1}`)})
	w.Comment("keep-alive")
	w.Write(Event{Data: []byte("two\nlines")})
	if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := NewSSEReader(strings.NewReader(rec.Body.String()+"retry: 500\n\n"+"data: "+strings.Repeat("z", 100)+"\n\ndata: ok\n\n"), 50)
	want := []Event{{ID: "1", Event: "message", Data: []byte(`{"a":1}`)}, {Data: []byte("two\nlines")}, {Retry: 500, Data: []byte{}}}
	for _, w := range want {
		ev, err := r.Next()
		if err != nil || ev.ID != w.ID || ev.Event != w.Event || string(ev.Data) != string(w.Data) || ev.Retry != w.Retry {
			t.Fatalf("got %+v %v, want %+v", ev, err, w)
		}
	}
	if _, err := r.Next(); !errors.Is(err, ErrTooLong) {
		t.Fatalf("oversized event: %v", err)
	}
	if ev, err := r.Next(); err != nil || string(ev.Data) != "ok" {
		t.Fatalf("after oversized: %+v %v", ev, err)
	}
}

func FuzzSSEReader(f *testing.F) {
	f.Add([]byte("id: 1\nevent: message\ndata: {}\n\n"))
	f.Add([]byte("data: a\ndata: b\n\n: c\nretry: x\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewSSEReader(strings.NewReader(string(b)), 64)
		for range 1000 {
			ev, err := r.Next()
			if err != nil && !errors.Is(err, ErrTooLong) {
				return
			}
			if len(ev.Data) > 64 {
				t.Fatalf("event data %d bytes over the limit", len(ev.Data))
			}
		}
	})
}

func TestAppendLineKeepsOneMessagePerLine(t *testing.T) {
	m, err := jsonrpc.Decode([]byte("{\"jsonrpc\":\"2.0\",\"id\":1,\r\n \"result\": {\n  \"text\": \"a\\nb\"\n }\n}"), jsonrpc.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := string(AppendLine([]byte("prefix"), m))
	if got != `prefix{"jsonrpc":"2.0","id":1,"result":{"text":"a\nb"}}`+"\n" {
		t.Fatalf("got %q", got)
	}
}
