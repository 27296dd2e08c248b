package archive

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"github.com/klauspost/compress/zstd"

	"github.com/mailmove/mailmove/message"
)

// Encryption and compression of an archive ("sealed" archives): see the
// README, "Encrypted and compressed archives". In short: every message
// file (an .eml, or an mbox segment) is an age file, optionally holding
// zstd frames; the index keeps in clear only what a writer without the
// private key needs, and seals the rest in one age blob per commit.

// EncryptionAge is Header.Encryption of an archive encrypted with age.
const EncryptionAge = "age"

// CompressionZstd is Header.Compression of an archive compressed with zstd.
const CompressionZstd = "zstd"

// Sealing is how an archive's messages are stored: encrypted to
// Recipients (none: in clear) and compressed with Compress ("" or
// CompressionZstd). A new archive takes it; an existing one must have the
// same (see SealingError).
type Sealing struct {
	Recipients []age.Recipient
	Compress   string
}

// ErrEncrypted is matched (errors.Is) by EncryptedError.
var ErrEncrypted = errors.New("the archive is encrypted")

// EncryptedError says that an archive is encrypted and that reading its
// messages needs an identity.
type EncryptedError struct {
	Root string
}

func (e *EncryptedError) Error() string {
	return fmt.Sprintf("%s is an encrypted archive: pass --identity FILE, the age identity file (as for `age -d -i FILE`) of a recipient it was written to", e.Root)
}

// Is makes errors.Is(err, ErrEncrypted) true.
func (e *EncryptedError) Is(target error) bool { return target == ErrEncrypted }

// IdentityError says that the identities given do not open an archive.
type IdentityError struct {
	Root string
	Err  error
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("%s: the --identity given does not open this archive (%v): pass the identity file of a recipient it was written to", e.Root, e.Err)
}

func (e *IdentityError) Unwrap() error { return e.Err }

// SealingError is returned when an export would mix sealed and plain (or
// differently compressed) messages in one archive.
type SealingError struct {
	Root string
	// Encrypted and Compress are the archive's; WantEncrypted and
	// WantCompress what the run asked for.
	Encrypted, WantEncrypted bool
	Compress, WantCompress   string
}

func (e *SealingError) Error() string {
	switch {
	case e.Encrypted && !e.WantEncrypted:
		return fmt.Sprintf("%s is an encrypted archive: pass --encrypt-to (or --encrypt-to-file) to add to it, or give a new --out folder for a plain archive", e.Root)
	case !e.Encrypted && e.WantEncrypted:
		return fmt.Sprintf("%s is a plain (not encrypted) archive: an archive is encrypted whole or not at all; give a new --out folder for an encrypted archive, or leave out --encrypt-to", e.Root)
	}
	name := func(c string) string {
		if c == "" {
			return "not compressed"
		}
		return "compressed with " + c
	}
	hint := "leave out --compress"
	if e.Compress != "" {
		hint = "pass --compress " + e.Compress
	}
	return fmt.Sprintf("%s is %s, not %s: %s to add to it, or give a new --out folder", e.Root, name(e.Compress), name(e.WantCompress), hint)
}

// IdentityFileModeError is an identity file that users other than its
// owner may read or write.
type IdentityFileModeError struct {
	Path string
	Mode os.FileMode
}

func (e *IdentityFileModeError) Error() string {
	return fmt.Sprintf("the identity file %s is readable by others (mode %04o): run chmod 600 %s and try again (mailmove refuses such a file, as ssh refuses a private key others can read)", e.Path, uint32(e.Mode.Perm()), e.Path)
}

// ParseRecipient parses one recipient: an age X25519 public key
// ("age1..."), a post-quantum hybrid one ("age1pq1..."), or an SSH public
// key ("ssh-ed25519 ..." or "ssh-rsa ...", as in authorized_keys).
func ParseRecipient(s string) (age.Recipient, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "ssh-"):
		return agessh.ParseRecipient(s)
	case strings.HasPrefix(s, "age1pq1"):
		return age.ParseHybridRecipient(s)
	case strings.HasPrefix(s, "age1"):
		return age.ParseX25519Recipient(s)
	case strings.HasPrefix(s, "AGE-SECRET-KEY"):
		return nil, errors.New("this is a private key (an identity), not a recipient: pass its public key, as `age-keygen -y FILE` prints it")
	}
	return nil, errors.New("not an age recipient (age1...) nor an SSH public key (ssh-ed25519 or ssh-rsa)")
}

// ReadRecipientsFile reads a recipients file as `age -R FILE` does: one
// recipient a line, empty lines and lines starting with "#" left out.
func ReadRecipientsFile(path string) ([]age.Recipient, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []age.Recipient
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r, err := ParseRecipient(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %v", path, i+1, err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no recipient", path)
	}
	return out, nil
}

// ReadIdentityFile reads an identity file as `age -d -i FILE` does: age
// identities (AGE-SECRET-KEY-1...), one a line, or an unencrypted SSH
// private key (ed25519 or RSA).
//
// Like a password file, an identity file that group or others may read or
// write is refused (IdentityFileModeError), except on Windows, whose file
// modes say nothing about that.
func ReadIdentityFile(path string) ([]age.Identity, error) {
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
			return nil, &IdentityFileModeError{Path: path, Mode: fi.Mode()}
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(b, []byte("age-encryption.org/")) {
		return nil, fmt.Errorf("%s is itself encrypted (a passphrase-protected identity): decrypt it to a file only you can read (age -d -o key.txt %s), or use an unprotected identity", path, path)
	}
	if bytes.Contains(b, []byte("-----BEGIN")) {
		id, err := agessh.ParseIdentity(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %v (an SSH key with a passphrase is not supported: use an age identity)", path, err)
		}
		return []age.Identity{id}, nil
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return ids, nil
}

// Encrypted reports whether the archive's messages are encrypted.
func (a *Archive) Encrypted() bool { return a.Header.Encryption != "" }

// Compressed reports whether the archive's messages are compressed.
func (a *Archive) Compressed() bool { return a.Header.Compression != "" }

// sealedMbox reports whether the archive keeps mbox segments (an
// encrypted mbox archive) in place of one mbox file per folder.
func (a *Archive) sealedMbox() bool { return a.Encrypted() && a.Header.Format == Mbox }

// SetIdentities gives a read-only archive the identities that decrypt it.
// It tries them on the archive's index at once: an identity that does not
// open it is an IdentityError.
func (a *Archive) SetIdentities(ids []age.Identity) error {
	a.identities = ids
	if !a.Encrypted() || len(ids) == 0 {
		return nil
	}
	for _, folder := range a.Folders() {
		recs, _, err := readIndex(a.indexPath(folder), 0)
		if err != nil {
			continue
		}
		for _, r := range recs {
			if r.Sealed != "" {
				_, err := a.openSealed(r.Sealed)
				return err
			}
		}
	}
	return nil
}

// NeedIdentity returns an EncryptedError when the archive is encrypted and
// no identity was given, nil otherwise.
func (a *Archive) NeedIdentity() error {
	if a.Encrypted() && len(a.identities) == 0 {
		return &EncryptedError{Root: a.Root}
	}
	return nil
}

// tag is the clear stand-in of a secret key in an encrypted archive: a
// SHA-256 of it salted with the archive's salt, so that a writer without
// the private key can compare it, and the index does not show it.
func (a *Archive) tag(kind, key string) string {
	h := sha256.New()
	h.Write([]byte("mailmove " + kind + "\x00" + a.Header.Salt + "\x00" + key))
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// MetaKey is m's content key (message.Meta.ContentKey) as RecordKey gives
// it for the records of this archive: the key itself, or its tag in an
// encrypted archive.
func (a *Archive) MetaKey(m *message.Meta) string {
	if !a.Encrypted() {
		return m.ContentKey()
	}
	if m.PMInternalID != "" {
		return m.ContentKey() // Proton's opaque ID is in clear already
	}
	return a.tag("content", m.ContentKey())
}

// RecordKey is the content key of a record of this archive (see MetaKey).
func (a *Archive) RecordKey(r *Record) string {
	if !a.Encrypted() || r.PMInternalID != "" {
		return r.ContentKey()
	}
	if r.SHA256 != "" { // unsealed
		return a.tag("content", r.ContentKey())
	}
	return r.Tag
}

// FlagsTag is what a record of an encrypted archive keeps in clear of its
// flags and labels, for export --refresh-flags to see a change.
func (a *Archive) FlagsTag(flags, labels []string) string {
	f := append([]string(nil), flags...)
	l := append([]string(nil), labels...)
	sort.Strings(f)
	sort.Strings(l)
	return a.tag("flags", strings.Join(f, "\x00")+"\x01"+strings.Join(l, "\x00"))
}

// RecordFlagsTag is r's FlagsTag (its clear one when r is not unsealed),
// over its flags, its Proton labels and its Gmail labels (TagLabels).
func (a *Archive) RecordFlagsTag(r *Record) string {
	if r.FlagsSum != "" {
		return r.FlagsSum
	}
	return a.FlagsTag(r.Flags, TagLabels(r.Labels, r.GmailLabels))
}

// TagLabels is the label list FlagsTag covers for a record with Proton
// labels and Gmail labels (gm_labels), the latter marked so that the two
// never stand for each other.
func TagLabels(labels, gmailLabels []string) []string {
	out := append([]string(nil), labels...)
	for _, l := range gmailLabels {
		out = append(out, "gm:"+l)
	}
	return out
}

// clearRecord is what the index of an encrypted archive keeps of r in
// clear: the secrets (flags, labels, Message-ID, SHA-256) are left out and
// tags stand in for what a writer compares.
func (a *Archive) clearRecord(r Record) Record {
	if r.Gone {
		return r // a gone line holds no secret (see MoveDeleted)
	}
	c := r
	if !r.FlagsUpdate {
		c.Tag = a.RecordKey(&r)
	}
	c.FlagsSum = a.FlagsTag(r.Flags, TagLabels(r.Labels, r.GmailLabels))
	c.Flags, c.Labels, c.MessageID, c.SHA256 = nil, nil, "", ""
	// Gmail's labels name what the mail is about, and its thread id links
	// messages: sealed too (its X-GM-MSGID stays, as Proton's id does: the
	// writer, which holds no private key, knows by it what it has).
	c.GmailLabels, c.GmailThrID = nil, ""
	return c
}

// sealLines returns the index lines of a batch in an encrypted archive: a
// line with the records whole, encrypted to the recipients, then each
// record's clear line.
func (a *Archive) sealLines(recs []Record) ([]byte, error) {
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return nil, err
		}
	}
	var ct bytes.Buffer
	aw, err := age.Encrypt(&ct, a.recipients...)
	if err != nil {
		return nil, err
	}
	if _, err := aw.Write(plain.Bytes()); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	oe := json.NewEncoder(&out)
	if err := oe.Encode(&Record{Sealed: base64.StdEncoding.EncodeToString(ct.Bytes()), SealedN: len(recs)}); err != nil {
		return nil, err
	}
	for i := range recs {
		c := a.clearRecord(recs[i])
		if err := oe.Encode(&c); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// openSealed decrypts a sealed index line's records.
func (a *Archive) openSealed(s string) ([]Record, error) {
	ct, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("a sealed index line is damaged: %v", err)
	}
	r, err := age.Decrypt(bytes.NewReader(ct), a.identities...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, &IdentityError{Root: a.Root, Err: err}
		}
		return nil, fmt.Errorf("a sealed index line is damaged: %v", err)
	}
	var out []Record
	dec := json.NewDecoder(r)
	for {
		var rec Record
		if err := dec.Decode(&rec); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("a sealed index line is damaged: %v", err)
		}
		out = append(out, rec)
	}
}

// unseal drops the sealed lines of an encrypted archive's index; with the
// archive's identities it gives each record its secrets back from the
// sealed line before it (checked against its clear line). Without them the
// records keep their clear fields only.
func (a *Archive) unseal(recs []Record) ([]Record, error) {
	if !a.Encrypted() {
		return recs, nil
	}
	out := make([]Record, 0, len(recs))
	var full []Record
	for _, r := range recs {
		if r.Sealed != "" {
			full = nil
			if len(a.identities) > 0 {
				f, err := a.openSealed(r.Sealed)
				if err != nil {
					return nil, err
				}
				full = f
			}
			continue
		}
		if len(a.identities) > 0 {
			if len(full) == 0 {
				return nil, fmt.Errorf("folder %s: an index line has no sealed part: the index was changed or damaged", r.Folder)
			}
			f := full[0]
			full = full[1:]
			if f.UID != r.UID || f.UIDValidity != r.UIDValidity || f.File != r.File || f.Offset != r.Offset || f.Length != r.Length {
				return nil, fmt.Errorf("folder %s UID %d: the index's clear line and its sealed part differ: the index was changed or damaged", r.Folder, r.UID)
			}
			f.FileSize, f.Tag, f.FlagsSum = r.FileSize, r.Tag, r.FlagsSum
			r = f
		}
		out = append(out, r)
	}
	return out, nil
}

// storedName is the name of a message file as stored: name + ".zst" in a
// compressed archive, + ".age" in an encrypted one.
func (a *Archive) storedName(name string) string {
	if a.Compressed() {
		name += ".zst"
	}
	if a.Encrypted() {
		name += ".age"
	}
	return name
}

// segmentName is a new mbox segment's file name for the folder whose mbox
// path is rel: rel.<time>-<random>.mbox(.zst).age, sorted by time.
func segmentName(a *Archive, rel string) string {
	return a.storedName(rel + "." + nowStamp() + "-" + randName()[:8] + ".mbox")
}

// isSegmentOf reports whether the file name (with "/") is a segment of the
// folder whose mbox path is rel.
// Exactly: another folder's segments (folder "INBOX.mbox.x" beside
// "INBOX") share the prefix, never the rest.
func isSegmentOf(name, rel string) bool {
	rest, ok := strings.CutPrefix(name, rel+".")
	return ok && segmentRest.MatchString(rest)
}

// segmentRest is what follows a folder's mbox path and a dot in the name of
// one of its segments (see segmentName).
var segmentRest = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}\.mbox(\.zst)?\.age$`)

// zstd encoders and decoders: one message at a time each, memory bounded
// by the window (1 MiB) whatever the message's size. The encoder's level is
// SpeedBetterCompression: the faster levels of this library store base64
// (most of mail's bytes: attachments) as it is, the better one codes it in
// 6 bits a character (a quarter smaller).
var (
	zencPool = sync.Pool{New: func() any {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err)
		}
		return e
	}}
	zdecPool = sync.Pool{New: func() any {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			panic(err)
		}
		return d
	}}
)

// zreader reads one zstd stream and gives its decoder back at the end.
type zreader struct{ d *zstd.Decoder }

func newZReader(r io.Reader) (*zreader, error) {
	d := zdecPool.Get().(*zstd.Decoder)
	if err := d.Reset(r); err != nil {
		zdecPool.Put(d)
		return nil, err
	}
	return &zreader{d: d}, nil
}

func (z *zreader) Read(p []byte) (int, error) {
	if z.d == nil {
		return 0, io.EOF
	}
	n, err := z.d.Read(p)
	if err != nil {
		z.d.Reset(nil)
		zdecPool.Put(z.d)
		z.d = nil
		if err != io.EOF {
			err = fmt.Errorf("zstd: %w (the file was changed or damaged)", err)
		}
	}
	return n, err
}

// decrypted returns the plaintext of an age file f of the given size,
// streaming.
func (a *Archive) decrypted(f io.ReaderAt, size int64) (io.Reader, error) {
	if err := a.NeedIdentity(); err != nil {
		return nil, err
	}
	r, err := age.Decrypt(io.NewSectionReader(f, 0, size), a.identities...)
	if err != nil {
		return nil, a.ageError(err)
	}
	return &ageReader{r: r}, nil
}

// ageReader marks a failed read of an age stream as damage.
type ageReader struct{ r io.Reader }

func (g *ageReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("cannot be decrypted: %w (the file was changed or damaged)", err)
	}
	return n, err
}

func (a *Archive) ageError(err error) error {
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return &IdentityError{Root: a.Root, Err: err}
	}
	return fmt.Errorf("cannot be decrypted: %w (the file was changed or damaged)", err)
}

// fileSize returns the size of f when it can tell it (an *os.File), else
// -1.
func fileSize(f io.ReaderAt) int64 {
	if s, ok := f.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := s.Stat(); err == nil {
			return fi.Size()
		}
	}
	return -1
}

// sweepSegments removes the segments of an encrypted mbox folder that its
// index does not know: a run stopped between writing one and indexing it.
func (a *Archive) sweepSegments(name string, st *FolderState) error {
	rel := a.folderPath(st)
	dir := filepath.Join(a.Root, filepath.FromSlash(rel))
	globbed, _ := filepath.Glob(dir + ".*.age")
	var matches []string // this folder's segments, not another's
	for _, m := range globbed {
		if r, err := filepath.Rel(a.Root, m); err == nil && isSegmentOf(filepath.ToSlash(r), rel) {
			matches = append(matches, m)
		}
	}
	if len(matches) == 0 || len(matches) == st.SegmentFiles {
		// none the index does not name (a folders.json a crash left
		// behind counts fewer, never more)
		return nil
	}
	known := map[string]bool{}
	recs, _, err := readIndex(a.indexPath(name), 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, r := range recs {
		known[r.File] = true
	}
	st.SegmentFiles = 0
	for f := range known {
		if isSegmentOf(f, rel) {
			st.SegmentFiles++
		}
	}
	a.dirty = true
	for _, m := range matches {
		r, err := filepath.Rel(a.Root, m)
		if err != nil {
			continue
		}
		r = filepath.ToSlash(r)
		if isSegmentOf(r, rel) && !known[r] {
			if err := os.Remove(m); err != nil {
				return fmt.Errorf("removing an interrupted run's segment: %w", err)
			}
		}
	}
	return nil
}

// sweepUnknownSegments removes the segments of folders the archive does
// not know (no index line, no state): a run stopped between writing a
// folder's first segment and indexing it. The known folders' segments are
// sweepSegments' (recoverFolder).
func (a *Archive) sweepUnknownSegments() error {
	var rels []string
	for _, st := range a.folders {
		rels = append(rels, a.folderPath(st))
	}
	return filepath.WalkDir(a.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a.Root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == StateDir || rel == DeletedDir {
				return filepath.SkipDir
			}
			return nil
		}
		if !segmentFile.MatchString(d.Name()) {
			return nil
		}
		for _, r := range rels {
			if isSegmentOf(rel, r) {
				return nil
			}
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("removing an interrupted run's segment: %w", err)
		}
		return nil
	})
}

// segmentFile is the end of a segment's file name (see segmentName).
var segmentFile = regexp.MustCompile(`\.[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}\.mbox(\.zst)?\.age$`)

// newSalt returns a new archive's salt for tags.
func newSalt() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sealedStream is the writing side of one stored file: bytes written to w
// go through zstd (in a compressed archive), then age (in an encrypted
// one), then to the file; Close ends the streams (not the file).
type sealedStream struct {
	w    io.Writer
	aw   io.WriteCloser
	z    *zstd.Encoder
	file *countWriter
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// newStream starts a stored file on dst: age when encrypted (with pre, an
// age stream made ahead, when not nil), zstd (one frame) when compress.
func (a *Archive) newStream(dst io.Writer, pre *preparedAge, encrypt, compress bool) (*sealedStream, error) {
	s := &sealedStream{file: &countWriter{w: dst}}
	s.w = s.file
	switch {
	case encrypt && pre != nil:
		if err := pre.sw.attach(s.file); err != nil {
			return nil, err
		}
		s.aw, s.w = pre.aw, pre.aw
	case encrypt:
		aw, err := age.Encrypt(s.file, a.recipients...)
		if err != nil {
			return nil, err
		}
		s.aw, s.w = aw, aw
	}
	if compress {
		s.z = zencPool.Get().(*zstd.Encoder)
		s.z.Reset(s.w)
		s.w = s.z
	}
	return s, nil
}

// closeFrame ends the zstd frame, if any (the age stream goes on).
func (s *sealedStream) closeFrame() error {
	if s.z == nil {
		return nil
	}
	err := s.z.Close()
	s.z.Reset(nil)
	zencPool.Put(s.z)
	s.z = nil
	return err
}

// Close ends the zstd frame and the age stream.
func (s *sealedStream) Close() error {
	err := s.closeFrame()
	if s.aw != nil {
		if e := s.aw.Close(); err == nil {
			err = e
		}
		s.aw = nil
	}
	return err
}

// switchWriter holds what is written to it until it is attached to its
// real destination: an age header made ahead of its file.
type switchWriter struct {
	w   io.Writer
	buf []byte
}

func (s *switchWriter) Write(p []byte) (int, error) {
	if s.w == nil {
		s.buf = append(s.buf, p...)
		return len(p), nil
	}
	return s.w.Write(p)
}

// attach writes what was held to w, and sends everything after to w.
func (s *switchWriter) attach(w io.Writer) error {
	s.w = w
	if len(s.buf) == 0 {
		return nil
	}
	_, err := w.Write(s.buf)
	s.buf = nil
	return err
}

// preparedAge is an age stream whose header (a new file key, wrapped for
// every recipient: an X25519 key agreement each) was made ahead.
type preparedAge struct {
	sw  *switchWriter
	aw  io.WriteCloser
	err error
}

// ageMaker makes the age headers of the next .eml files ahead, so that
// their key agreements overlap with receiving the messages.
type ageMaker struct {
	ch   chan preparedAge
	quit chan struct{}
	done chan struct{}
}

func newAgeMaker(recipients []age.Recipient) *ageMaker {
	m := &ageMaker{ch: make(chan preparedAge, 4), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			sw := &switchWriter{}
			aw, err := age.Encrypt(sw, recipients...)
			select {
			case m.ch <- preparedAge{sw: sw, aw: aw, err: err}:
			case <-m.quit:
				return
			}
		}
	}()
	return m
}

// stop ends the maker; the headers nobody took are dropped (their file
// keys were never used).
func (m *ageMaker) stop() {
	close(m.quit)
	<-m.done
}

// segCache keeps the decrypting readers of the last segments read, so that
// reading every message of a segment (import, check, verify) unwraps its
// age header once, not once per message. Each entry holds its own
// descriptor of the file the caller opened (and vetted), so the caller may
// close its own.
type segCache struct {
	mu      sync.Mutex
	entries []*segEntry // most recent last
}

type segEntry struct {
	name string
	f    *os.File
	fi   fs.FileInfo
	ra   io.ReaderAt
}

const segCacheSize = 8

// segmentReader returns the plaintext of the segment f (named name, of the
// given size) as an io.ReaderAt, from the cache when it holds the same
// file.
func (a *Archive) segmentReader(name string, f io.ReaderAt, size int64) (io.ReaderAt, error) {
	of, isFile := f.(*os.File)
	var fi fs.FileInfo
	if isFile {
		fi, _ = of.Stat()
	}
	if fi != nil {
		c := &a.segs
		c.mu.Lock()
		for _, e := range c.entries {
			if e.name == name && os.SameFile(e.fi, fi) && e.fi.Size() == fi.Size() && e.fi.ModTime().Equal(fi.ModTime()) {
				c.mu.Unlock()
				return e.ra, nil
			}
		}
		c.mu.Unlock()
		if df, ok := dupFile(of); ok {
			ra, _, err := age.DecryptReaderAt(df, size, a.identities...)
			if err != nil {
				df.Close()
				return nil, a.ageError(err)
			}
			c.mu.Lock()
			c.entries = append(c.entries, &segEntry{name: name, f: df, fi: fi, ra: ra})
			if len(c.entries) > segCacheSize {
				c.entries[0].f.Close()
				c.entries = c.entries[1:]
			}
			c.mu.Unlock()
			return ra, nil
		}
	}
	ra, _, err := age.DecryptReaderAt(f, size, a.identities...)
	if err != nil {
		return nil, a.ageError(err)
	}
	return ra, nil
}

// close closes the cached descriptors.
func (c *segCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		e.f.Close()
	}
	c.entries = nil
}
