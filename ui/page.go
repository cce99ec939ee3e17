package ui

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"path"
	"strings"
)

// staticFiles holds the live page: index.html is a template rendered at /,
// the other files are served as they are below /static/.
//
//go:embed static
var staticFiles embed.FS

// pageTemplate is static/index.html.
var pageTemplate = template.Must(template.ParseFS(staticFiles, "static/index.html"))

// pageCSP allows the page its own scripts, styles and websocket, nothing
// inline and nothing from elsewhere: event data can never run as code.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"connect-src 'self'; img-src 'self' data:; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

// pageData fills the page template.
type pageData struct {
	Sensor string
	// Token is the token the page was opened with, for the links to its
	// scripts and styles; empty when it came in a header or is not
	// required.
	Token string
}

// servePage renders the live page.
func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	data := pageData{Sensor: s.cfg.Sensor}
	if tok, inQuery := requestToken(r); inQuery && s.cfg.Token != "" {
		data.Token = tok
	}
	var buf bytes.Buffer
	if err := s.page.Execute(&buf, data); err != nil {
		s.log.Error("rendering the live page", keyErr, err)
		writeError(w, http.StatusInternalServerError, "", "rendering the page failed")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	_, _ = w.Write(buf.Bytes())
}

// staticHandler serves the page's scripts and styles below /static/, and
// the third-party ones below /static/vendor/: plain files only, no
// directory listings and not the page template.
func staticHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/static/")
		base := strings.TrimPrefix(name, "vendor/")
		if base == "" || name != path.Clean(name) || strings.Contains(base, "/") ||
			strings.HasSuffix(name, ".html") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Security-Policy", pageCSP)
		http.ServeFileFS(w, r, staticFiles, "static/"+name)
	})
}
