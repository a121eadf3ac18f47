package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// Event is one Server-Sent Event.
type Event struct {
	ID    string
	Event string // "" means "message"
	Data  []byte
	Retry int // milliseconds; 0 when absent
}

// SSEReader reads Server-Sent Events (the text/event-stream format) with a
// bound on each event's data.
type SSEReader struct {
	lr  *LineReader
	max int
}

// NewSSEReader returns a reader of events whose data is at most max bytes.
func NewSSEReader(r io.Reader, max int) *SSEReader {
	return &SSEReader{lr: NewLineReader(r, max+64), max: max}
}

// Next returns the next event with data or an id. Comment lines and empty
// events are skipped. An event larger than the limit is skipped and reported
// with ErrTooLong; the reader can go on.
func (s *SSEReader) Next() (Event, error) {
	var ev Event
	var data bytes.Buffer
	hasData, tooLong := false, false
	for {
		line, err := s.lr.ReadLine()
		if errors.Is(err, ErrTooLong) {
			tooLong = true
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) && (hasData || ev.ID != "") && !tooLong {
				ev.Data = data.Bytes()
				return ev, nil
			}
			return Event{}, err
		}
		if len(line) == 0 { // dispatch
			if tooLong {
				return Event{}, fmt.Errorf("event data longer than %d bytes: %w", s.max, ErrTooLong)
			}
			if hasData || ev.ID != "" || ev.Retry != 0 {
				ev.Data = data.Bytes()
				return ev, nil
			}
			ev = Event{}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if tooLong {
				continue
			}
			if hasData {
				data.WriteByte('\n')
			}
			if data.Len()+len(value) > s.max {
				tooLong = true
				data.Reset()
				continue
			}
			data.Write(value)
			hasData = true
		case "event":
			ev.Event = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.ID = string(value)
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 {
				ev.Retry = n
			}
		}
	}
}

// SSEWriter writes Server-Sent Events to an HTTP response and flushes each.
type SSEWriter struct {
	w   io.Writer
	f   http.Flusher
	buf []byte
}

// NewSSEWriter prepares w for an event stream: it sets the headers and
// writes the status line.
func NewSSEWriter(w http.ResponseWriter) *SSEWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	s := &SSEWriter{w: w, f: f}
	s.flush()
	return s
}

// Write sends one event. Data must not contain a newline (JSON-RPC messages
// encoded compactly never do); if it does, it is split over data lines.
func (s *SSEWriter) Write(ev Event) error {
	if bytes.IndexByte(ev.Data, '\r') >= 0 || bytes.IndexByte(ev.Data, '\n') >= 0 {
		// Forwarded JSON may be pretty-printed; a lone CR would end the
		// line early for the reader. Compact it when it is JSON.
		var c bytes.Buffer
		if json.Compact(&c, ev.Data) == nil {
			ev.Data = c.Bytes()
		}
	}
	b := s.buf[:0]
	if ev.ID != "" {
		b = append(b, "id: "...)
		b = append(b, ev.ID...)
		b = append(b, '\n')
	}
	if ev.Event != "" {
		b = append(b, "event: "...)
		b = append(b, ev.Event...)
		b = append(b, '\n')
	}
	for _, line := range bytes.Split(ev.Data, []byte{'\n'}) {
		b = append(b, "data: "...)
		b = append(b, line...)
		b = append(b, '\n')
	}
	b = append(b, '\n')
	s.buf = b
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	s.flush()
	return nil
}

// Comment sends a comment line, used as a keep-alive.
func (s *SSEWriter) Comment(text string) error {
	if _, err := io.WriteString(s.w, ": "+text+"\n\n"); err != nil {
		return err
	}
	s.flush()
	return nil
}

func (s *SSEWriter) flush() {
	if s.f != nil {
		s.f.Flush()
	}
}
