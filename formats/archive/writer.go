package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/mailmove/mailmove/formats/mbox"
	"github.com/mailmove/mailmove/message"
)

// Commit thresholds: a folder writer makes its data durable and writes the
// index after this many messages, bytes or seconds, whichever comes first.
const (
	commitMessages = 2000
	commitBytes    = 256 << 20
	commitInterval = 5 * time.Second
)

// FolderWriter adds messages to one folder of an archive.
type FolderWriter struct {
	// LabelCopies marks every record written as a label copy.
	LabelCopies bool

	a    *Archive
	name string
	segs []string

	// mbox
	mboxPath string
	mboxRel  string
	mf       *os.File
	bw       *bufio.Writer
	mbr      *bufio.Reader // reads each message as it is written
	off      int64
	seg      *segment // the open segment of an encrypted mbox folder

	// eml
	dir    string
	relDir string
	tmpDir string
	files  []string      // written since the last commit, for platforms without syncfs
	ebw    *bufio.Writer // reused for every .eml file: few, large writes
	cbuf   []byte        // the copy buffer, reused for every .eml file
	tmps   *tmpMaker     // creates the next temporary files ahead
	ages   *ageMaker     // makes the next age headers ahead (encrypted)

	index        *os.File
	inflight     chan error // the background commit's result, while one runs
	pending      []Record
	pendingBytes int64
	lastCommit   time.Time
}

// OpenFolder returns a writer for the folder with the given name (segments
// joined with "/") and segments.
func (a *Archive) OpenFolder(name string, segs []string) (*FolderWriter, error) {
	a.mu.Lock()
	st := a.folderLocked(name, segs)
	end := st.MboxEnd
	rel := a.folderPath(st) // with "/"
	a.mu.Unlock()
	w := &FolderWriter{a: a, name: name, segs: segs, lastCommit: time.Now()}
	if a.sealedMbox() {
		// segments: rel.<time>-<random>.mbox.age, written in TmpDir
		w.mboxPath = filepath.Join(a.Root, filepath.FromSlash(rel))
		w.mboxRel = rel
		w.tmpDir = filepath.Join(a.Root, filepath.FromSlash(TmpDir))
		if err := os.MkdirAll(filepath.Dir(w.mboxPath), 0o700); err != nil {
			return nil, err
		}
	} else if a.Header.Format == Mbox {
		a.mu.Lock()
		file := a.mboxFile(st)
		a.mu.Unlock()
		w.mboxPath = filepath.Join(a.Root, filepath.FromSlash(file))
		w.mboxRel = file
		if err := os.MkdirAll(filepath.Dir(w.mboxPath), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(w.mboxPath, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, err
		}
		if _, err := f.Seek(end, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		w.mf, w.off = f, end
		w.bw = bufio.NewWriterSize(f, 256<<10)
	} else {
		w.dir = filepath.Join(a.Root, filepath.FromSlash(rel))
		w.relDir = rel
		w.tmpDir = filepath.Join(a.Root, filepath.FromSlash(TmpDir))
		if err := os.MkdirAll(w.dir, 0o700); err != nil {
			return nil, err
		}
	}
	idx, err := os.OpenFile(a.indexPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		w.closeFiles()
		return nil, err
	}
	w.index = idx
	a.mu.Lock()
	if st.Path == "" {
		// the mapping is kept from now on, whatever later versions map to
		st.Path = rel
		a.dirty = true
	}
	a.mu.Unlock()
	return w, nil
}

// Dedup decides, once a message's bytes are hashed, whether it is already
// in the archive. It returns the record of the stored copy, or nil to keep
// the message.
type Dedup func(m *message.Meta, here Record) (*Record, error)

// Put writes one message, streaming r, and fills in meta's Size, SHA256,
// MessageID, PMInternalID and Sender. If dedup finds the message already
// stored, only an alias record is added. The message is committed (durable
// and indexed) at the next Commit, which Put calls itself now and then.
func (w *FolderWriter) Put(meta *message.Meta, r io.Reader, dedup Dedup) (stored bool, err error) {
	meta.Folder = w.name
	h := sha256.New()
	var rec Record
	var tmp string
	if w.mboxPath != "" {
		var dst io.Writer
		if w.a.sealedMbox() {
			if w.seg == nil {
				if err := w.openSegment(); err != nil {
					return false, err
				}
			}
			dst = w.seg.s.w
		} else {
			// The buffer must hold only this message, so that rewind can drop it.
			if err := w.bw.Flush(); err != nil {
				return false, err
			}
			dst = w.bw
		}
		cw := &countWriter{w: dst}
		var out io.Writer = cw
		var zenc *zstd.Encoder
		if w.a.Compressed() {
			// one zstd frame per message: it is read alone
			zenc = zencPool.Get().(*zstd.Encoder)
			zenc.Reset(cw)
			out = zenc
		}
		mw := mbox.NewWriter(out, w.a.Header.LF)
		// one reader for every message of the folder (64 KiB each would be
		// allocated per message otherwise)
		if w.mbr == nil {
			w.mbr = bufio.NewReaderSize(r, 64<<10)
		} else {
			w.mbr.Reset(r)
		}
		br := w.mbr
		hdr := sniffHeader(br)
		_, _, sender := message.HeaderFields(bufio.NewReader(bytes.NewReader(hdr)))
		at, ins := -1, []byte(nil)
		if w.a.StatusHeaders {
			at, ins = statusLines(hdr, br, meta.Flags)
		}
		cr := &counter{}
		orig := io.MultiWriter(h, cr) // the server's bytes, without the added lines
		var body io.Reader
		if len(ins) > 0 {
			body = io.MultiReader(io.TeeReader(bytes.NewReader(hdr[:at]), orig), bytes.NewReader(ins),
				io.TeeReader(io.MultiReader(bytes.NewReader(hdr[at:]), br), orig))
		} else {
			body = io.TeeReader(io.MultiReader(bytes.NewReader(hdr), br), orig)
		}
		wr, err := mw.WriteMessageInfo(sender, meta.InternalDate, body)
		if zenc != nil {
			if cerr := zenc.Close(); err == nil {
				err = cerr
			}
			zenc.Reset(nil)
			zencPool.Put(zenc)
		}
		if err != nil {
			w.rewind(cw.n)
			return false, err
		}
		meta.Size = cr.n
		meta.MessageID, meta.PMInternalID, meta.Sender = message.HeaderFields(bufio.NewReader(bytes.NewReader(hdr)))
		rec.File, rec.Offset, rec.Length = w.mboxRel, w.off, cw.n
		if w.seg != nil {
			rec.File = w.seg.rel
		}
		if len(ins) > 0 {
			rec.StatusAt, rec.StatusLen = int64(at), int64(len(ins))
		}
		if wr.RawFrom >= 0 {
			rec.LFRawFrom = &wr.RawFrom
		}
	} else {
		if w.tmps == nil {
			w.tmps = newTmpMaker(w.tmpDir)
		}
		tf := <-w.tmps.ch
		if tf.err != nil {
			return false, tf.err
		}
		f := tf.f
		tmp = tf.name
		if w.ebw == nil {
			w.ebw = bufio.NewWriterSize(f, 256<<10)
		} else {
			w.ebw.Reset(f)
		}
		var sn message.HeaderSniffer
		var n int64
		var pre *preparedAge
		if w.a.Encrypted() {
			if w.ages == nil {
				w.ages = newAgeMaker(w.a.recipients)
			}
			p := <-w.ages.ch
			pre, err = &p, p.err
		}
		var ss *sealedStream
		if err == nil {
			ss, err = w.a.newStream(w.ebw, pre, w.a.Encrypted(), w.a.Compressed())
		}
		if ss != nil {
			if w.cbuf == nil {
				w.cbuf = make([]byte, 32<<10)
			}
			n, err = io.CopyBuffer(io.MultiWriter(ss.w, h, &sn), r, w.cbuf)
			if cerr := ss.Close(); err == nil {
				err = cerr
			}
		}
		if err == nil {
			err = w.ebw.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		w.ebw.Reset(nil)
		if err != nil {
			os.Remove(tmp)
			return false, err
		}
		meta.Size = n
		meta.MessageID, meta.PMInternalID, meta.Sender = sn.Fields()
		if w.a.Encrypted() || w.a.Compressed() {
			rec.FileSize = ss.file.n
		}
	}
	meta.SHA256 = hex.EncodeToString(h.Sum(nil))
	if dedup != nil {
		here := rec
		here.Folder = w.name
		if tmp != "" {
			here.File = joinSlash(w.relDir, w.a.emlName(meta))
		}
		orig, err := dedup(meta, here)
		if err != nil || orig != nil {
			if tmp != "" {
				os.Remove(tmp)
			} else {
				w.rewind(rec.Length)
			}
			if err != nil {
				return false, err
			}
			rec = orig.location()
			rec.Meta, rec.Alias = *meta, true
			w.add(rec, 0)
			return false, nil
		}
	}
	if tmp != "" {
		name := w.a.emlName(meta)
		if err := rename(tmp, filepath.Join(w.dir, name)); err != nil {
			os.Remove(tmp)
			return false, err
		}
		w.files = append(w.files, filepath.Join(w.dir, name))
		rec.File = joinSlash(w.relDir, name)
	} else {
		w.off += rec.Length
	}
	rec.Meta = *meta
	w.add(rec, meta.Size)
	return true, nil
}

func joinSlash(dir, name string) string {
	if dir == "" || dir == "." {
		return name
	}
	return dir + "/" + name
}

// rewind drops a half-written mbox message of n bytes. An encrypted
// segment cannot be cut (an age stream is written once): the bytes stay in
// it, unindexed, and the next message starts after them.
func (w *FolderWriter) rewind(n int64) {
	if w.seg != nil {
		w.off += n
		return
	}
	w.bw.Reset(w.mf)
	w.mf.Truncate(w.off)
	w.mf.Seek(w.off, io.SeekStart)
}

// add queues a record for the next commit.
func (w *FolderWriter) add(rec Record, n int64) {
	rec.Folder = w.name
	rec.LabelCopy = w.LabelCopies
	w.pending = append(w.pending, rec)
	w.pendingBytes += n
}

// UpdateFlags records new flags, and labels when not nil, for a message
// already in the folder.
func (w *FolderWriter) UpdateFlags(uidValidity, uid uint32, flags, labels []string) {
	w.add(Record{Meta: message.Meta{UIDValidity: uidValidity, UID: uid, Flags: flags, Labels: labels}, FlagsUpdate: true}, 0)
}

// UpdateGmail records new flags and Gmail labels (gm_labels) for a message
// already in the folder (export --refresh-flags of a Gmail account).
func (w *FolderWriter) UpdateGmail(uidValidity, uid uint32, flags, gmLabels []string) {
	w.add(Record{Meta: message.Meta{UIDValidity: uidValidity, UID: uid, Flags: flags, GmailLabels: gmLabels}, FlagsUpdate: true, GmailUpdate: true}, 0)
}

// NeedCommit reports whether enough is pending that Commit (or
// CommitBackground) should run.
func (w *FolderWriter) NeedCommit() bool {
	return len(w.pending) >= commitMessages || w.pendingBytes >= commitBytes ||
		(len(w.pending) > 0 && time.Since(w.lastCommit) >= commitInterval)
}

// Pending returns the records not yet committed (nor being committed).
func (w *FolderWriter) Pending() []Record { return w.pending }

// Commit makes every message written so far durable, then appends their
// index lines and makes those durable. It waits for a background commit
// first, and returns its error if it failed.
func (w *FolderWriter) Commit() error {
	if err := w.wait(); err != nil {
		return err
	}
	b, err := w.take()
	if err != nil || b == nil {
		return err
	}
	return w.commit(b)
}

// CommitBackground commits what is pending like Commit, but in the
// background: the next messages can be fetched and written while the data
// is made durable. At most one background commit runs at a time (this call
// waits for the previous one, and returns its error); Commit and Close wait
// for it. The guarantee is Commit's: an index line is written only after the
// bytes of its message are durable.
func (w *FolderWriter) CommitBackground() error {
	if err := w.wait(); err != nil {
		return err
	}
	b, err := w.take()
	if err != nil || b == nil {
		return err
	}
	done := make(chan error, 1)
	w.inflight = done
	go func() { done <- w.commit(b) }()
	return nil
}

// wait waits for the background commit, if one runs, and returns its error.
func (w *FolderWriter) wait() error {
	if w.inflight == nil {
		return nil
	}
	err := <-w.inflight
	w.inflight = nil
	return err
}

// batch is what one commit makes durable and indexes.
type batch struct {
	recs  []Record
	files []string // .eml files, for platforms without syncfs
	seg   *segment // the segment of an encrypted mbox folder, finished
}

// take hands the pending records to a commit: the mbox buffer is written
// to the file first, so that the commit's fsync covers them.
func (w *FolderWriter) take() (*batch, error) {
	if len(w.pending) == 0 {
		return nil, nil
	}
	if w.mf != nil {
		if err := w.bw.Flush(); err != nil {
			return nil, err
		}
	}
	var seg *segment
	if w.seg != nil {
		// an age stream is complete only once closed: the segment ends here
		seg, w.seg = w.seg, nil
		if err := seg.finish(); err != nil {
			seg.abandon()
			return nil, err
		}
		for i := range w.pending {
			if w.pending[i].File == seg.rel {
				w.pending[i].FileSize = seg.size
			}
		}
	}
	b := &batch{recs: w.pending, files: w.files, seg: seg}
	w.pending, w.files = nil, nil
	w.pendingBytes = 0
	w.lastCommit = time.Now()
	return b, nil
}

// commit makes a batch durable, then writes and syncs its index lines, then
// brings the folder's state up to date. It touches only the index file,
// the already written message files and the archive (under its lock), so it
// can run while Put writes the next messages.
func (w *FolderWriter) commit(b *batch) error {
	if b.seg != nil {
		if err := b.seg.commit(w.a.Root); err != nil {
			return err
		}
	} else if w.mf != nil {
		if err := w.mf.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", w.mboxPath, err)
		}
	} else if len(b.files) > 0 {
		if err := syncFiles(w.a.Root, w.dir, b.files); err != nil {
			return err
		}
	}
	if updates(b.recs) {
		if err := w.a.require(VersionUpdates); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	if w.a.Encrypted() {
		lines, err := w.a.sealLines(b.recs)
		if err != nil {
			return err
		}
		buf.Write(lines)
	} else {
		enc := json.NewEncoder(&buf)
		for i := range b.recs {
			if err := enc.Encode(&b.recs[i]); err != nil {
				return err
			}
		}
	}
	if _, err := w.index.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("writing the index: %w", err)
	}
	if err := w.index.Sync(); err != nil {
		return fmt.Errorf("fsync the index: %w", err)
	}
	w.a.mu.Lock()
	st := w.a.folderLocked(w.name, w.segs)
	for i := range b.recs {
		st.apply(&b.recs[i])
	}
	st.IndexSize += int64(buf.Len())
	if b.seg != nil {
		st.SegmentFiles++
	}
	w.a.dirty = true
	w.a.mu.Unlock()
	return nil
}

// Close commits and closes the folder's files.
func (w *FolderWriter) Close() error {
	err := w.Commit()
	if cerr := w.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

func (w *FolderWriter) closeFiles() error {
	err := w.wait()
	if w.tmps != nil {
		w.tmps.stop()
		w.tmps = nil
	}
	if w.ages != nil {
		w.ages.stop()
		w.ages = nil
	}
	if w.seg != nil {
		// only messages dropped since the last commit: nothing indexed
		w.seg.abandon()
		w.seg = nil
	}
	if w.mf != nil {
		if e := w.bw.Flush(); e != nil && err == nil {
			err = e
		}
		if e := w.mf.Close(); e != nil && err == nil {
			err = e
		}
		w.mf = nil
	}
	if w.index != nil {
		if e := w.index.Close(); e != nil && err == nil {
			err = e
		}
		w.index = nil
	}
	return err
}

// segment is an encrypted mbox folder's segment being written: an age
// file in TmpDir, renamed to rel in the folder when committed.
type segment struct {
	f    *os.File
	tmp  string
	rel  string
	bw   *bufio.Writer
	s    *sealedStream
	size int64 // the file's size, once finished
}

// openSegment starts a new segment for the folder.
func (w *FolderWriter) openSegment() error {
	tmp := filepath.Join(w.tmpDir, ".mm-tmp-"+randName())
	f, err := createExcl(tmp)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	s, err := w.a.newStream(bw, nil, true, false)
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	w.seg = &segment{f: f, tmp: tmp, rel: segmentName(w.a, w.mboxRel), bw: bw, s: s}
	w.off = 0
	return nil
}

// finish ends the age stream and writes the buffer to the file.
func (s *segment) finish() error {
	if err := s.s.Close(); err != nil {
		return err
	}
	s.size = s.s.file.n
	return s.bw.Flush()
}

// commit makes a finished segment durable under its name.
func (s *segment) commit(root string) error {
	if err := s.f.Sync(); err != nil {
		s.abandon()
		return fmt.Errorf("fsync %s: %w", s.tmp, err)
	}
	if err := s.f.Close(); err != nil {
		os.Remove(s.tmp)
		return err
	}
	final := filepath.Join(root, filepath.FromSlash(s.rel))
	if err := rename(s.tmp, final); err != nil {
		os.Remove(s.tmp)
		return err
	}
	return syncDir(filepath.Dir(final))
}

// abandon drops a segment that is not committed.
func (s *segment) abandon() {
	s.s.Close()
	s.f.Close()
	os.Remove(s.tmp)
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// statusLines returns the Status:, X-Status: and X-Keywords: lines for a
// message with flags, the way mutt, Dovecot and Python's mailbox read them
// (Status: R for \Seen and O, since no archived message is \Recent;
// X-Status: A \Answered, F \Flagged, T \Draft, D \Deleted; X-Keywords: the
// keywords), and where in the message they go: at the end of its header,
// before the empty line, with the header's line ending. hdr is the start of
// the message as sniffHeader read it; at is -1 and lines nil when the end
// of the header is not in hdr (a header over message.MaxHeader bytes).
func statusLines(hdr []byte, rest *bufio.Reader, flags []string) (at int, lines []byte) {
	var last []byte // hdr's last line
	if i := bytes.LastIndexByte(hdr[:max(len(hdr)-1, 0)], '\n'); i >= 0 {
		last = hdr[i+1:]
	} else {
		last = hdr
	}
	eol := "\r\n"
	switch {
	case string(last) == "\r\n" || string(last) == "\n":
		// the empty line that ends the header
		at, eol = len(hdr)-len(last), string(last)
	case len(hdr) < message.MaxHeader && bytes.HasSuffix(hdr, []byte("\n")):
		// a message that is all header: the lines go at its end
		if _, err := rest.Peek(1); err != io.EOF {
			return -1, nil
		}
		at = len(hdr)
		if !bytes.HasSuffix(hdr, []byte("\r\n")) {
			eol = "\n"
		}
	default:
		return -1, nil
	}
	have := map[string]bool{}
	var kw []string
	for _, f := range flags {
		if strings.HasPrefix(f, "\\") {
			have[strings.ToLower(f)] = true
			continue
		}
		if f != "" && strings.IndexFunc(f, func(r rune) bool { return r <= ' ' || r == 0x7f }) < 0 {
			kw = append(kw, f)
		}
	}
	var b bytes.Buffer
	b.WriteString("Status: ")
	if have["\\seen"] {
		b.WriteByte('R')
	}
	b.WriteString("O" + eol)
	var x string
	for _, p := range []struct{ flag, c string }{{"\\answered", "A"}, {"\\flagged", "F"}, {"\\draft", "T"}, {"\\deleted", "D"}} {
		if have[p.flag] {
			x += p.c
		}
	}
	if x != "" {
		b.WriteString("X-Status: " + x + eol)
	}
	if len(kw) > 0 {
		b.WriteString("X-Keywords: " + strings.Join(kw, " ") + eol)
	}
	return at, b.Bytes()
}

// tmpMaker creates empty temporary files in the archive's TmpDir ahead of
// need, so that the file system's work for a new file (an inode, a
// directory entry) overlaps with receiving the message that goes into it.
// Files it made and nobody took are removed by stop, or after a crash by
// the next Open, which empties TmpDir.
type tmpMaker struct {
	ch   chan tmpFile
	quit chan struct{}
	done chan struct{}
}

type tmpFile struct {
	f    *os.File
	name string
	err  error
}

func newTmpMaker(dir string) *tmpMaker {
	m := &tmpMaker{ch: make(chan tmpFile, 2), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			name := filepath.Join(dir, ".mm-tmp-"+randName())
			f, err := createExcl(name)
			select {
			case m.ch <- tmpFile{f: f, name: name, err: err}:
			case <-m.quit:
				if f != nil {
					f.Close()
					os.Remove(name)
				}
				return
			}
		}
	}()
	return m
}

// stop ends the maker and removes the files nobody took.
func (m *tmpMaker) stop() {
	close(m.quit)
	<-m.done
	for {
		select {
		case tf := <-m.ch:
			if tf.f != nil {
				tf.f.Close()
				os.Remove(tf.name)
			}
		default:
			return
		}
	}
}
