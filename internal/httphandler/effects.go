package httphandler

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/fleetworks/fleet/internal/jsonkind"

	"github.com/fleetworks/fleet/handlers"
)

// reply is a successful response's body, the effects format:
//
//	{"effects":[{"op":"INCRBY","key":"stock:{sku-1}","delta":5}, …],"result":"…"}
//
// Both members may be left out. A member the format does not have is
// refused, in the reply and in each effect: a misspelt "effect" or "detla"
// would otherwise stage nothing, silently.
type reply struct {
	Effects []effect `json:"effects"`
	Result  *string  `json:"result"`
}

// effect is one staged effect: op is the Redis command of a Go Tx method
// (handlers.OpKind's names: INCRBY, SET, DEL, HSET, HINCRBY, HDEL,
// PEXPIRE, and EXPIRE for PEXPIRE), in any case, with the members that
// command needs and no other.
type effect struct {
	Op    string  `json:"op"`
	Key   string  `json:"key"`
	Delta *int64  `json:"delta"`
	Field *string `json:"field"`
	Value *string `json:"value"`
	TTLMS *int64  `json:"ttl_ms"`
}

// needs lists, for each kind, the members beside op and key it needs: d
// delta, f field, v value, t ttl_ms.
var needs = map[handlers.OpKind]string{
	handlers.OpIncrBy:  "d",
	handlers.OpSet:     "v",
	handlers.OpDel:     "",
	handlers.OpHSet:    "fv",
	handlers.OpHIncrBy: "fd",
	handlers.OpHDel:    "f",
	handlers.OpExpire:  "t",
}

// kinds maps an op's name to its kind.
var kinds = func() map[string]handlers.OpKind {
	m := map[string]handlers.OpKind{"EXPIRE": handlers.OpExpire}
	for k := range needs {
		m[k.String()] = k
	}
	return m
}()

// readReply decodes a successful response's body and stages its effects
// and result on tx. A body that is not the format, or an effect that is
// not well formed, is an error wrapping handlers.ErrInvalidEffect, and
// stages nothing.
func readReply(body []byte, tx *handlers.Tx) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var r reply
	if err := json.Unmarshal(body, &r, json.RejectUnknownMembers(true)); err != nil {
		return fmt.Errorf("%w: the response is not the effects format: %s", handlers.ErrInvalidEffect, formatError(err))
	}
	ops := make([]handlers.Op, 0, len(r.Effects))
	for i, e := range r.Effects {
		op, err := e.op()
		if err != nil {
			return fmt.Errorf("%w: effect %d: %v", handlers.ErrInvalidEffect, i, err)
		}
		ops = append(ops, op)
	}
	for _, op := range ops {
		tx.Stage(op)
	}
	if r.Result != nil {
		tx.SetResult([]byte(*r.Result))
	}
	return nil
}

// formatError says what is wrong with a body in the words of the format,
// for the handler's author (who may not write Go): where, and what.
func formatError(err error) string {
	var se *json.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &syn):
		return "not JSON: " + strings.TrimPrefix(syn.Error(), "jsontext: ")
	case errors.As(err, &se):
		where := "the body"
		if se.JSONPointer != "" {
			where = string(se.JSONPointer)
		}
		switch {
		case errors.Is(se.Err, json.ErrUnknownName):
			return fmt.Sprintf("%s: a member the format does not have (the members are effects and result; in an effect op, key, delta, field, value, ttl_ms)", where)
		case se.GoType != nil && se.GoType.Kind() == reflect.Int64:
			return fmt.Sprintf("%s: want an integer within 64 bits", where)
		case se.GoType != nil && se.GoType.Kind() == reflect.String:
			return fmt.Sprintf("%s: want a string, got %s", where, jsonkind.Name(se.JSONKind))
		case se.GoType != nil && se.GoType.Kind() == reflect.Slice:
			return fmt.Sprintf("%s: want an array, got %s", where, jsonkind.Name(se.JSONKind))
		case se.Err != nil:
			return fmt.Sprintf("%s: %v", where, se.Err)
		}
	}
	return err.Error()
}

// op checks e against its command and returns it as a handlers.Op.
func (e effect) op() (handlers.Op, error) {
	name := strings.ToUpper(e.Op)
	kind, ok := kinds[name]
	need := needs[kind]
	switch {
	case !ok:
		return handlers.Op{}, fmt.Errorf("op %q: want one of INCRBY, SET, DEL, HSET, HINCRBY, HDEL, PEXPIRE", e.Op)
	case e.Key == "":
		return handlers.Op{}, fmt.Errorf("%s: key missing or empty", name)
	}
	has := map[byte]bool{'d': e.Delta != nil, 'f': e.Field != nil, 'v': e.Value != nil, 't': e.TTLMS != nil}
	member := map[byte]string{'d': "delta", 'f': "field", 'v': "value", 't': "ttl_ms"}
	for _, m := range []byte("dfvt") {
		wanted := strings.IndexByte(need, m) >= 0
		if wanted != has[m] {
			return handlers.Op{}, fmt.Errorf("%s: %s %s", name, member[m], map[bool]string{true: "missing", false: "not taken"}[wanted])
		}
	}
	op := handlers.Op{Kind: kind, Key: e.Key}
	if e.Delta != nil {
		op.Delta = *e.Delta
	}
	if e.Field != nil {
		op.Field = *e.Field
	}
	if e.Value != nil {
		op.Value = *e.Value
	}
	if e.TTLMS != nil {
		if *e.TTLMS <= 0 || *e.TTLMS > maxTTLMS {
			return handlers.Op{}, fmt.Errorf("%s: ttl_ms %d: want 1 to %d", name, *e.TTLMS, int64(maxTTLMS))
		}
		op.TTL = time.Duration(*e.TTLMS) * time.Millisecond
	}
	return op, nil
}

// maxTTLMS is the longest time to live an effect may set: what a
// time.Duration holds, in milliseconds.
const maxTTLMS = int64(1<<63-1) / int64(time.Millisecond)
