// celcheck evaluates a ValidatingAdmissionPolicy the way kube-apiserver does
// (k8s.io/apiserver's own compiler and validator, the plugin's compilePolicy
// steps), offline: a JSON document on stdin, {"policy": VAP, "cases": [...]},
// one JSON line per case on stdout: whether the policy matched and denied.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"

	v1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"
)

type gvk struct {
	Group, Version, Kind, Resource, Subresource string
}

type testCase struct {
	Name      string                 `json:"name"`
	Operation string                 `json:"operation"`
	Namespace string                 `json:"namespace"`
	ObjName   string                 `json:"objectName"`
	Resource  gvk                    `json:"resource"`
	User      string                 `json:"user"`
	Object    map[string]interface{} `json:"object"`
	OldObject map[string]interface{} `json:"oldObject"`
}

type input struct {
	Policy v1.ValidatingAdmissionPolicy `json:"policy"`
	Cases  []testCase                   `json:"cases"`
}

type result struct {
	Name     string   `json:"name"`
	Denied   bool     `json:"denied"`
	Errors   []string `json:"errors"`
	Messages []string `json:"messages"`
}

func compile(policy *v1.ValidatingAdmissionPolicy) validating.Validator {
	optionalVars := cel.OptionalVariableDeclarations{HasParams: policy.Spec.ParamKind != nil, HasAuthorizer: true}
	exprVars := cel.OptionalVariableDeclarations{HasParams: policy.Spec.ParamKind != nil, HasAuthorizer: false}
	compiler, err := cel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return validating.NewValidator(nil, nil, nil, nil, policy.Spec.FailurePolicy, err)
	}
	vars := make([]cel.NamedExpressionAccessor, len(policy.Spec.Variables))
	for i, v := range policy.Spec.Variables {
		vars[i] = &validating.Variable{Name: v.Name, Expression: v.Expression}
	}
	compiler.CompileAndStoreVariables(vars, optionalVars, environment.StoredExpressions)
	var matcher matchconditions.Matcher
	if n := len(policy.Spec.MatchConditions); n > 0 {
		acc := make([]cel.ExpressionAccessor, n)
		for i := range policy.Spec.MatchConditions {
			acc[i] = (*matchconditions.MatchCondition)(&policy.Spec.MatchConditions[i])
		}
		matcher = matchconditions.NewMatcher(compiler.CompileCondition(acc, optionalVars, environment.StoredExpressions),
			policy.Spec.FailurePolicy, "policy", "validate", policy.Name)
	}
	validations := make([]cel.ExpressionAccessor, len(policy.Spec.Validations))
	messages := make([]cel.ExpressionAccessor, len(policy.Spec.Validations))
	for i, v := range policy.Spec.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason}
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
		}
	}
	return validating.NewValidator(
		compiler.CompileCondition(validations, optionalVars, environment.StoredExpressions), matcher,
		compiler.CompileCondition(nil, optionalVars, environment.StoredExpressions),
		compiler.CompileCondition(messages, exprVars, environment.StoredExpressions),
		policy.Spec.FailurePolicy, nil)
}

func obj(m map[string]interface{}) runtime.Object {
	if m == nil {
		return nil
	}
	return &unstructured.Unstructured{Object: m}
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "celcheck: cannot read input:", err)
		os.Exit(2)
	}
	v := compile(&in.Policy)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, c := range in.Cases {
		r := c.Resource
		gvr := schema.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}
		kind := schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind}
		attrs := admission.NewAttributesRecord(obj(c.Object), obj(c.OldObject), kind, c.Namespace, c.ObjName, gvr,
			r.Subresource, admission.Operation(c.Operation), nil, false, &user.DefaultInfo{Name: c.User})
		versioned := &admission.VersionedAttributes{Attributes: attrs, VersionedKind: kind,
			VersionedObject: obj(c.Object), VersionedOldObject: obj(c.OldObject)}
		res := v.Validate(context.Background(), gvr, versioned, nil, nil, celconfig.RuntimeCELCostBudget, nil)
		got := result{Name: c.Name, Errors: []string{}, Messages: []string{}}
		for _, d := range res.Decisions {
			if d.Action == validating.ActionDeny {
				got.Denied = true
				got.Messages = append(got.Messages, d.Message)
			}
			if d.Evaluation == validating.EvalError {
				got.Errors = append(got.Errors, d.Message)
			}
		}
		line, _ := json.Marshal(got)
		out.Write(append(line, '\n'))
	}
}
