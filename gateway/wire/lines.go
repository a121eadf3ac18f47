package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrTooLong reports a line or event that exceeded the reader's limit. The
// reader has skipped it and can go on.
var ErrTooLong = errors.New("message exceeds size limit")

// LineReader reads newline-delimited lines of at most Max bytes. Unlike
// bufio.Scanner it has no fixed 64 KiB limit and it survives an oversized
// line: the line is discarded and ReadLine returns ErrTooLong once for it.
type LineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewLineReader returns a LineReader over r for lines up to max bytes.
func NewLineReader(r io.Reader, max int) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// ReadLine returns the next line without its line ending (\n or \r\n). The
// returned slice is freshly allocated and owned by the caller. At the end of
// input it returns io.EOF; a final line without a newline is returned first.
func (l *LineReader) ReadLine() ([]byte, error) {
	l.buf = l.buf[:0]
	tooLong := false
	for {
		frag, err := l.r.ReadSlice('\n')
		if !tooLong {
			if len(l.buf)+len(frag) > l.max+2 { // allow for \r\n
				tooLong = true
				l.buf = l.buf[:0]
			} else {
				l.buf = append(l.buf, frag...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, fmt.Errorf("line longer than %d bytes: %w", l.max, ErrTooLong)
			}
			line := bytes.TrimRight(l.buf, "\r\n")
			if len(line) > l.max {
				return nil, fmt.Errorf("line longer than %d bytes: %w", l.max, ErrTooLong)
			}
			return bytes.Clone(line), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if tooLong {
				return nil, fmt.Errorf("line longer than %d bytes: %w", l.max, ErrTooLong)
			}
			if len(l.buf) > 0 {
				return bytes.Clone(bytes.TrimRight(l.buf, "\r\n")), nil
			}
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}
