// Package policies is weft's second gate: organisation rules written in
// Rego, evaluated by the embedded OPA engine over the typed mesh model,
// after schema validation and before anything is compiled or served. The
// same code runs in `weft vet`, in CI and in the reconciler.
//
// # What it owns
//
//   - The default policy bundle (bundle/, embedded): one Rego package per
//     rule below weft.rules, each with its *_test.rego for `opa test`,
//     the library weft.lib, and data.json, the default configuration.
//   - The engine (New, Engine.Eval): the bundle, the mesh repository's
//     policies/ folder and any --policy folders are loaded and compiled
//     once into prepared queries (the rules dealt into one group per core,
//     evaluated concurrently), then evaluated for every environment and
//     revision. A file that does not parse or compile is an error with its
//     file:line (Errors), never skipped.
//   - The input document (BuildInput): input.mesh is the model with the
//     field names of the CUE schema (and, per service, the fields inherited
//     from mesh.defaults), input.routes the effective route tables as the
//     compiler builds them, input.environment, input.revision and
//     input.splits (the other environments' traffic splits, for the canary
//     rule). It is built directly as an OPA value, without JSON.
//   - Findings (Finding): the rule, deny or warn, the message, the CUE field
//     path the rule names and its file:line:column in the mesh repository
//     (mesh.Positions), the environment.
//   - The configuration by data (Config): data.weft.config.rules.<rule>
//     (enabled, only, skip, warn and the rule's own settings) and
//     data.weft.config.exceptions ({rule, service, environments, reason}).
//   - `weft vet`'s two steps: Load (schema.LoadContext of the environment
//     vetted and of every other one, for input.splits, within the limits)
//     and Check (the engine on each environment vetted); Vet is both.
//     The report (Report.Write) is text, JSON, SARIF 2.1.0 or GitHub
//     workflow annotations; Explain is `weft vet --explain`. The gate of
//     package reconciler/pipeline runs them for vet, build, up and the
//     controller, and adds the pseudo rule RuleAcceptance.
//
// # The rule contract
//
// It is conftest's. A rule is a package below weft.rules; its id is the
// package path below it ("mtls_strict", "team.owner_label"). Its rules
// named deny or deny_<name> stop the build; warn or warn_<name> are
// reported. Each is a set of messages (or a single message, or true), a
// message being a string or an object {msg, path, fix, related} where path
// is the field path the finding is about: an array of keys and indexes
// from the input's root (["mesh", "services", "orders", "routes",
// "create"]), which is also the CUE path
// (mesh.services.orders.routes.create), or a CUE path string. The engine
// maps it to the file:line where that field (or its nearest written
// ancestor) is written; related ([{path, msg}], optional) are other places
// the finding involves, each mapped the same way (Finding.Related) and
// named in the message with its file:line (Finding.Message). The package's METADATA block (title, description,
// custom.fix) is the rule's documentation: `weft vet --explain`, SARIF.
//
// docs/policies.md documents every default rule, the configuration and how
// a team adds its own rules.
//
// It must not import any weft package but schema/ (and internal/): the
// compiler, the reconciler and the sidecar come after it.
package policies
