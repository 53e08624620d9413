package workload

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/prometheus/common/model"
)

// selector is a PromQL instant vector selector, the only expression the
// Prometheus stand-in evaluates: `name`, `name{label="v", ...}` or
// `{label="v", ...}`.
type selector []matcher

// matcher is one label matcher of a selector.
type matcher struct {
	name  model.LabelName
	op    string // "=", "!=", "=~" or "!~"
	value string
	re    *regexp.Regexp // for =~ and !~, anchored as PromQL anchors it
}

// matches reports whether m's value of the matcher's label fits.
func (mt matcher) matches(m model.Metric) bool {
	v := string(m[mt.name])
	switch mt.op {
	case "=":
		return v == mt.value
	case "!=":
		return v != mt.value
	case "=~":
		return mt.re.MatchString(v)
	default: // "!~"
		return !mt.re.MatchString(v)
	}
}

// matches reports whether every matcher of sel fits m.
func (sel selector) matches(m model.Metric) bool {
	for _, mt := range sel {
		if !mt.matches(m) {
			return false
		}
	}
	return true
}

// errNotSelector says what the stand-in cannot evaluate.
var errNotSelector = errors.New("the Prometheus API stand-in evaluates only instant vector selectors such as up or up{job=\"prometheus\"}")

// parseSelector parses q as an instant vector selector. Like PromQL, it
// refuses a selector whose matchers all match the empty string.
func parseSelector(q string) (selector, error) {
	s := strings.TrimSpace(q)
	if s == "" {
		return nil, errors.New("empty query")
	}
	var sel selector
	name, rest := cutIdentifier(s, true)
	if name != "" {
		sel = append(sel, matcher{name: model.MetricNameLabel, op: "=", value: name})
	}
	rest = strings.TrimSpace(rest)
	if strings.HasPrefix(rest, "{") {
		matchers, after, err := parseMatchers(rest[1:])
		if err != nil {
			return nil, err
		}
		sel = append(sel, matchers...)
		rest = strings.TrimSpace(after)
	}
	if rest != "" || len(sel) == 0 {
		return nil, fmt.Errorf("%w: %q", errNotSelector, q)
	}
	for _, mt := range sel {
		if !mt.matches(model.Metric{}) {
			return sel, nil
		}
	}
	return nil, errors.New("vector selector must contain at least one non-empty matcher")
}

// parseMatchers parses `label op "value", ... }` (the opening brace
// consumed) and returns the matchers and what follows the closing brace.
func parseMatchers(s string) ([]matcher, string, error) {
	var out []matcher
	for {
		s = strings.TrimSpace(s)
		if strings.HasPrefix(s, "}") {
			return out, s[1:], nil
		}
		name, rest := cutIdentifier(s, false)
		if name == "" {
			return nil, "", fmt.Errorf("%w: expected a label name at %q", errNotSelector, s)
		}
		rest = strings.TrimSpace(rest)
		var op string
		for _, o := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(rest, o) {
				op = o
				break
			}
		}
		if op == "" {
			return nil, "", fmt.Errorf("%w: expected =, !=, =~ or !~ after %q", errNotSelector, name)
		}
		value, rest, err := cutString(strings.TrimSpace(rest[len(op):]))
		if err != nil {
			return nil, "", err
		}
		mt := matcher{name: model.LabelName(name), op: op, value: value}
		if op == "=~" || op == "!~" {
			if mt.re, err = regexp.Compile("^(?s:" + value + ")$"); err != nil {
				return nil, "", fmt.Errorf("invalid regular expression %q: %w", value, err)
			}
		}
		out = append(out, mt)
		rest = strings.TrimSpace(rest)
		switch {
		case strings.HasPrefix(rest, ","):
			s = rest[1:]
		case strings.HasPrefix(rest, "}"):
			s = rest
		default:
			return nil, "", fmt.Errorf("%w: expected , or } at %q", errNotSelector, rest)
		}
	}
}

// cutIdentifier splits off a leading metric name (with colons) or label
// name.
func cutIdentifier(s string, metric bool) (string, string) {
	end := 0
	for i, r := range s {
		ok := r == '_' || (r < unicode.MaxASCII && unicode.IsLetter(r)) || (i > 0 && r < unicode.MaxASCII && unicode.IsDigit(r)) || (metric && r == ':')
		if !ok {
			break
		}
		end = i + 1
	}
	return s[:end], s[end:]
}

// cutString splits off a leading PromQL string literal ("...", '...' or
// `...`) and returns its value.
func cutString(s string) (string, string, error) {
	if s == "" {
		return "", "", fmt.Errorf("%w: expected a string", errNotSelector)
	}
	quote := s[0]
	if quote != '"' && quote != '\'' && quote != '`' {
		return "", "", fmt.Errorf("%w: expected a quoted string at %q", errNotSelector, s)
	}
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quote != '`':
			i++ // the escaped character
		case s[i] == quote:
			lit := s[:i+1]
			if quote == '\'' {
				lit = doubleQuoted(lit[1:i])
			}
			v, err := strconv.Unquote(lit)
			if err != nil {
				return "", "", fmt.Errorf("invalid string %s: %w", s[:i+1], err)
			}
			return v, s[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("unterminated string %s", s)
}

// doubleQuoted turns the body of a single-quoted string into a Go
// double-quoted literal with the same value.
func doubleQuoted(body string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '\\' && i+1 < len(body) && body[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == '\\' && i+1 < len(body):
			b.WriteByte(c)
			b.WriteByte(body[i+1])
			i++
		case c == '"':
			b.WriteString(`\"`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
