package proxy

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// htpasswd checks Basic credentials against an htpasswd file, re-reading
// the file when it changes. Supported hashes: bcrypt ($2a$, $2b$, $2y$),
// SHA-1 ({SHA}), and Apache MD5 ($apr1$).
type htpasswd struct {
	path string

	mu      sync.Mutex
	users   map[string]string
	modTime time.Time
	size    int64
	checked time.Time
	err     error
}

func newHtpasswd(path string) (*htpasswd, error) {
	h := &htpasswd{path: path}
	if err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// reload reads the file when its size or modification time changed. A file
// that cannot be read keeps the users already loaded.
func (h *htpasswd) reload() error {
	fi, err := os.Stat(h.path)
	if err != nil {
		return fmt.Errorf("auth.htpasswd: %w", err)
	}
	if fi.ModTime().Equal(h.modTime) && fi.Size() == h.size && h.users != nil {
		return nil
	}
	data, err := os.ReadFile(h.path)
	if err != nil {
		return fmt.Errorf("auth.htpasswd: %w", err)
	}
	users, err := parseHtpasswd(data)
	if err != nil {
		return fmt.Errorf("auth.htpasswd %s: %w", h.path, err)
	}
	h.users, h.modTime, h.size = users, fi.ModTime(), fi.Size()
	return nil
}

// parseHtpasswd reads "user:hash" lines; blank lines and # comments are
// skipped. A line without a colon or with an unsupported hash is an error
// naming its line number.
func parseHtpasswd(data []byte) (map[string]string, error) {
	users := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: want user:hash", n)
		}
		if !supportedHash(hash) {
			return nil, fmt.Errorf("line %d: unsupported hash for user %q "+
				"(use bcrypt, {SHA} or $apr1$)", n, user)
		}
		users[user] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return users, nil
}

func supportedHash(h string) bool {
	return strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") ||
		strings.HasPrefix(h, "$2y$") || strings.HasPrefix(h, "{SHA}") ||
		strings.HasPrefix(h, "$apr1$")
}

// authResult is the verdict on a request's credentials.
type authResult int

const (
	authOK      authResult = iota
	authMissing            // no credentials: a challenge
	authBad                // malformed, another scheme, unknown user or wrong password
)

// check returns the verdict on a Proxy-Authorization value, the user it
// names, and why it failed.
func (h *htpasswd) check(header string) (authResult, string, string) {
	if header == "" {
		return authMissing, "", "no credentials"
	}
	scheme, cred, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return authBad, "", fmt.Sprintf("credentials of scheme %q; this proxy wants Basic",
			truncate(scheme, 20))
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return authBad, "", "malformed Basic credentials (not base64)"
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return authBad, "", "malformed Basic credentials (no colon)"
	}
	user = cleanUser(user)

	h.mu.Lock()
	if time.Since(h.checked) > time.Second {
		h.checked = time.Now()
		h.err = h.reload()
	}
	hash, known := h.users[user]
	h.mu.Unlock()
	if !known {
		return authBad, user, "unknown user"
	}
	if !matchHash(hash, pass) {
		return authBad, user, "wrong password"
	}
	return authOK, user, ""
}

func matchHash(hash, pass string) bool {
	switch {
	case strings.HasPrefix(hash, "{SHA}"):
		sum := sha1.Sum([]byte(pass))
		want := base64.StdEncoding.EncodeToString(sum[:])
		return subtle.ConstantTimeCompare([]byte(want), []byte(hash[5:])) == 1
	case strings.HasPrefix(hash, "$apr1$"):
		return subtle.ConstantTimeCompare([]byte(apr1(pass, hash)), []byte(hash)) == 1
	default:
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) == nil
	}
}

// apr1 computes Apache's MD5-based crypt of pass with the salt of hash, in
// hash's "$apr1$salt$digest" form.
func apr1(pass, hash string) string {
	rest := strings.TrimPrefix(hash, "$apr1$")
	salt, _, _ := strings.Cut(rest, "$")
	if len(salt) > 8 {
		salt = salt[:8]
	}
	const magic = "$apr1$"

	alt := md5.Sum([]byte(pass + salt + pass))
	ctx := md5.New()
	ctx.Write([]byte(pass + magic + salt))
	for i := len(pass); i > 0; i -= 16 {
		ctx.Write(alt[:min(i, 16)])
	}
	for i := len(pass); i > 0; i >>= 1 {
		if i&1 == 1 {
			ctx.Write([]byte{0})
		} else {
			ctx.Write([]byte{pass[0]})
		}
	}
	sum := ctx.Sum(nil)

	// The thousand rounds are the algorithm's cost.
	for i := 0; i < 1000; i++ {
		r := md5.New()
		if i&1 == 1 {
			r.Write([]byte(pass))
		} else {
			r.Write(sum)
		}
		if i%3 != 0 {
			r.Write([]byte(salt))
		}
		if i%7 != 0 {
			r.Write([]byte(pass))
		}
		if i&1 == 1 {
			r.Write(sum)
		} else {
			r.Write([]byte(pass))
		}
		sum = r.Sum(nil)
	}

	const itoa64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var out strings.Builder
	enc := func(a, b, c byte, n int) {
		v := uint(a)<<16 | uint(b)<<8 | uint(c)
		for ; n > 0; n-- {
			out.WriteByte(itoa64[v&0x3f])
			v >>= 6
		}
	}
	enc(sum[0], sum[6], sum[12], 4)
	enc(sum[1], sum[7], sum[13], 4)
	enc(sum[2], sum[8], sum[14], 4)
	enc(sum[3], sum[9], sum[15], 4)
	enc(sum[4], sum[10], sum[5], 4)
	enc(0, 0, sum[11], 2)
	return magic + salt + "$" + out.String()
}

// credentialUser returns the user a Proxy-Authorization value names,
// never its secret: the user of Basic credentials, or DOMAIN\user of an
// NTLM type-3 message. Other schemes and malformed values give "".
func credentialUser(h string) string {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return ""
	}
	switch {
	case strings.EqualFold(scheme, "Basic"):
		user, _, _ := strings.Cut(string(raw), ":")
		return cleanUser(user)
	case strings.EqualFold(scheme, "NTLM"), strings.EqualFold(scheme, "Negotiate"):
		user, _ := ntlmUser(raw)
		return user
	}
	return ""
}

// ntlmUser reads the domain and user of an NTLM AUTHENTICATE (type 3)
// message.
func ntlmUser(msg []byte) (string, error) {
	if len(msg) < 64 || !bytes.HasPrefix(msg, []byte("NTLMSSP\x00")) {
		return "", errors.New("not an NTLM message")
	}
	if binary.LittleEndian.Uint32(msg[8:12]) != 3 {
		return "", errors.New("not an NTLM type-3 message")
	}
	unicode := binary.LittleEndian.Uint32(msg[60:64])&1 == 1
	field := func(at int) (string, error) {
		n := int(binary.LittleEndian.Uint16(msg[at : at+2]))
		off := int(binary.LittleEndian.Uint32(msg[at+4 : at+8]))
		if off < 0 || n > 512 || off+n > len(msg) {
			return "", errors.New("NTLM field out of range")
		}
		b := msg[off : off+n]
		if !unicode {
			return string(b), nil
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		return string(utf16.Decode(u)), nil
	}
	domain, err := field(28)
	if err != nil {
		return "", err
	}
	user, err := field(36)
	if err != nil {
		return "", err
	}
	if domain != "" {
		user = domain + `\` + user
	}
	return cleanUser(user), nil
}

// cleanUser keeps a user name printable and short: it ends up in logs,
// the store and the page.
func cleanUser(u string) string {
	if len(u) > 128 {
		u = u[:128]
	}
	if !utf8.ValidString(u) {
		u = strings.ToValidUTF8(u, "?")
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, u)
}
