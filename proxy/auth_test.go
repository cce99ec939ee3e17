package proxy

import (
	"encoding/base64"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf16"

	"golang.org/x/crypto/bcrypt"
)

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestHtpasswd(t *testing.T) {
	bc, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	// The $apr1$ and {SHA} lines were made by openssl passwd -apr1 and
	// by SHA-1 of "secret".
	file := "# users\nalice:" + string(bc) + "\n" +
		"bob:$apr1$abcdefgh$aJUuGLjz3OI4ylHF//t5U1\n" +
		"carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := newHtpasswd(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, header string
		want         authResult
		user         string
	}{
		{"bcrypt", basic("alice", "secret"), authOK, "alice"},
		{"apr1", basic("bob", "p@ss word"), authOK, "bob"},
		{"sha", basic("carol", "secret"), authOK, "carol"},
		{"wrong password", basic("alice", "nope"), authBad, "alice"},
		{"unknown user", basic("mallory", "secret"), authBad, "mallory"},
		{"missing", "", authMissing, ""},
		{"not base64", "Basic !!!", authBad, ""},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), authBad, ""},
		{"other scheme", "Digest username=alice", authBad, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, user, why := h.check(tc.header)
			if got != tc.want || user != tc.user {
				t.Fatalf("check = %v %q (%s), want %v %q", got, user, why, tc.want, tc.user)
			}
			if got != authOK && why == "" {
				t.Fatal("a refusal without a reason")
			}
		})
	}

	// The file is re-read when it changes.
	bc2, _ := bcrypt.GenerateFromPassword([]byte("new"), bcrypt.MinCost)
	if err := os.WriteFile(path, []byte("dave:"+string(bc2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(2 * time.Second)
	_ = os.Chtimes(path, future, future)
	h.checked = time.Time{}
	if got, _, _ := h.check(basic("dave", "new")); got != authOK {
		t.Fatal("changed file not re-read")
	}
	if got, _, _ := h.check(basic("alice", "secret")); got != authBad {
		t.Fatal("removed user still accepted")
	}
}

func TestParseHtpasswdErrors(t *testing.T) {
	for name, data := range map[string]string{
		"no colon":   "alice\n",
		"crypt hash": "alice:abJnggxhB/yWI\n",
		"empty user": ":$apr1$x$y\n",
	} {
		if _, err := parseHtpasswd([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// ntlmType3 builds an NTLM AUTHENTICATE message naming domain and user.
func ntlmType3(domain, user string) []byte {
	enc := func(s string) []byte {
		u := utf16.Encode([]rune(s))
		b := make([]byte, 2*len(u))
		for i, v := range u {
			binary.LittleEndian.PutUint16(b[2*i:], v)
		}
		return b
	}
	d, u := enc(domain), enc(user)
	msg := make([]byte, 64)
	copy(msg, "NTLMSSP\x00")
	binary.LittleEndian.PutUint32(msg[8:], 3)
	binary.LittleEndian.PutUint16(msg[28:], uint16(len(d)))
	binary.LittleEndian.PutUint32(msg[32:], 64)
	binary.LittleEndian.PutUint16(msg[36:], uint16(len(u)))
	binary.LittleEndian.PutUint32(msg[40:], uint32(64+len(d)))
	binary.LittleEndian.PutUint32(msg[60:], 1) // unicode
	return append(append(msg, d...), u...)
}

func TestCredentialUser(t *testing.T) {
	ntlm := "NTLM " + base64.StdEncoding.EncodeToString(ntlmType3("CORP", "WS01$"))
	cases := map[string]string{
		basic("alice", "secret"): "alice",
		ntlm:                     `CORP\WS01$`,
		"NTLM " + base64.StdEncoding.EncodeToString([]byte("NTLMSSP\x00\x01\x00\x00\x00")): "",
		"Bearer xyz":            "",
		basic("a\x00b\nc", "x"): "a?b?c",
		"":                      "",
	}
	for in, want := range cases {
		if got := credentialUser(in); got != want {
			t.Errorf("credentialUser(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseHtpasswd(f *testing.F) {
	f.Add([]byte("alice:$apr1$abcdefgh$aJUuGLjz3OI4ylHF//t5U1\n# c\n\nbob:{SHA}x\n"))
	f.Add([]byte(":::\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseHtpasswd(data)
		if err != nil {
			return
		}
		for u, h := range users {
			if u == "" || !supportedHash(h) {
				t.Fatalf("accepted %q:%q", u, h)
			}
		}
	})
}

func FuzzCredentialUser(f *testing.F) {
	f.Add("NTLM " + base64.StdEncoding.EncodeToString(ntlmType3("CORP", "user")))
	f.Add(basic("alice", "secret"))
	f.Fuzz(func(t *testing.T, h string) {
		u := credentialUser(h)
		if len(u) > 4*128 {
			t.Fatalf("user of %d bytes", len(u))
		}
		for _, r := range u {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", u)
			}
		}
	})
}

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o600) }
