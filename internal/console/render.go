package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticRoot embed.FS

// staticFS serves /static/… from the embedded static directory.
var staticFS fs.FS = staticRoot

// pages are the parsed templates: each page with the layout around it.
type pages struct{ byName map[string]*template.Template }

var funcs = template.FuncMap{
	"printable": printableBytes,
	"text":      printableString,
	"pretty":    prettyValue,
	"ago":       ago,
	"when":      when,
	"seconds":   func(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) + " s" },
}

func parsePages() (*pages, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{byName: map[string]*template.Template{}}
	for _, n := range names {
		if n == "templates/layout.html" || n == "templates/partials.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		p.byName[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	return p, nil
}

// page is what every page template gets: the caller, its CSRF token, the
// group and the page's own data.
type page struct {
	Title  string
	Caller Caller
	CSRF   string
	Group  string
	Nav    string
	Data   any
}

// render writes a page with status code.
func (s *Server) render(w http.ResponseWriter, code int, name string, c Caller, title string, data any) {
	t, ok := s.pages.byName[name]
	if !ok {
		http.Error(w, "no page "+name, http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	p := page{Title: title, Caller: c, CSRF: s.csrf.token(c), Group: s.cfg.Backend.Group(), Nav: name, Data: data}
	if err := t.Execute(&buf, p); err != nil {
		http.Error(w, "render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// fail renders an error page.
func (s *Server) fail(w http.ResponseWriter, _ *http.Request, c Caller, code int, msg string) {
	s.render(w, code, "error", c, http.StatusText(code), msg)
}

// printableString shows s as it is when it is valid UTF-8 without control
// characters (but newlines and tabs), and quoted with escapes otherwise,
// so that no byte of a hostile value reaches the page unseen.
func printableString(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool {
		return r != '\n' && r != '\t' && (unicode.IsControl(r) || r == utf8.RuneError || unicode.In(r, unicode.Cf))
	}) < 0 {
		return s
	}
	return strconv.Quote(s)
}

func printableBytes(b []byte) string { return printableString(string(b)) }

// prettyValue is a value indented when it is JSON, else printable.
func prettyValue(b []byte) string {
	if json.Valid(b) {
		var out bytes.Buffer
		if err := json.Indent(&out, b, "", "  "); err == nil {
			return printableString(out.String())
		}
	}
	return printableBytes(b)
}

// ago is how long before now t was, rounded for a person.
func ago(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return d.Round(time.Second).String() + " ago"
	case d < 48*time.Hour:
		return d.Round(time.Minute).String() + " ago"
	}
	return strconv.Itoa(int(d.Hours()/24)) + " days ago"
}

func when(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
