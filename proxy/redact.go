package proxy

import (
	"net/url"
	"regexp"
	"strings"
)

// secretParam matches query parameters whose values are likely secrets.
var secretParam = regexp.MustCompile(
	`(?i)((?:^|[?&;])(?:pass|passwd|password|pwd|secret|token|access_token|api_?key|key|auth|sig|signature)=)[^&;#\s"]*`)

// userinfoPassword matches the password of user:password@ in a URL.
var userinfoPassword = regexp.MustCompile(`(://[^/@\s:]*:)[^/@\s]*@`)

// redactURL returns u for storing and showing: the password of its user
// information and the values of secret-looking query parameters replaced.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), "xxxxx")
		}
	}
	if c.RawQuery != "" {
		c.RawQuery = secretParam.ReplaceAllString(c.RawQuery, "${1}xxxxx")
	}
	return c.String()
}

// redactText applies the same to free text such as a request line.
func redactText(s string) string {
	if !strings.ContainsAny(s, "@=") {
		return s
	}
	s = userinfoPassword.ReplaceAllString(s, "${1}xxxxx@")
	return secretParam.ReplaceAllString(s, "${1}xxxxx")
}
