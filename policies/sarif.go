package policies

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/weft-dev/weft/schema"
)

// SARIFSchemaURI is the $schema a SARIF log of weft names.
const SARIFSchemaURI = "https://json.schemastore.org/sarif-2.1.0.json"

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text     string `json:"text"`
	Markdown string `json:"markdown,omitempty"`
}

type sarifRule struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name,omitempty"`
	ShortDescription     sarifText       `json:"shortDescription"`
	FullDescription      *sarifText      `json:"fullDescription,omitempty"`
	Help                 *sarifText      `json:"help,omitempty"`
	DefaultConfiguration sarifRuleConfig `json:"defaultConfiguration"`
	Properties           map[string]any  `json:"properties,omitempty"`
}

type sarifRuleConfig struct {
	Level string `json:"level"`
}

type sarifResult struct {
	RuleID           string          `json:"ruleId"`
	RuleIndex        int             `json:"ruleIndex"`
	Level            string          `json:"level"`
	Message          sarifText       `json:"message"`
	Locations        []sarifLocation `json:"locations,omitempty"`
	RelatedLocations []sarifLocation `json:"relatedLocations,omitempty"`
	Properties       map[string]any  `json:"properties,omitempty"`
}

type sarifLocation struct {
	ID               *int           `json:"id,omitempty"`
	PhysicalLocation *sarifPhysical `json:"physicalLocation,omitempty"`
	LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
	Message          *sarifText     `json:"message,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn,omitempty"`
}

type sarifLogical struct {
	FullyQualifiedName string `json:"fullyQualifiedName"`
	Kind               string `json:"kind,omitempty"`
}

func level(s Severity) string {
	if s == Deny {
		return "error"
	}
	return "warning"
}

// writeSARIF writes a SARIF 2.1.0 log: one run of the tool "weft" whose
// driver lists every rule (the pseudo rules, then the loaded ones, with
// their documentation) and one result per finding. Artifact URIs are the
// positions as text output writes them (relative to the working
// directory, which in CI is the repository's root).
func (r *Report) writeSARIF(o WriteOptions) error {
	all := append(append([]*Rule{}, pseudoRules...), r.Rules...)
	index := map[string]int{}
	driver := sarifDriver{Name: "weft", Version: o.Version, InformationURI: "https://github.com/weft-dev/weft", Rules: []sarifRule{}}
	for i, rule := range all {
		index[rule.ID] = i
		sr := sarifRule{
			ID:                   rule.ID,
			Name:                 ruleName(rule.ID),
			ShortDescription:     sarifText{Text: rule.Title},
			DefaultConfiguration: sarifRuleConfig{Level: level(rule.Severity)},
			Properties:           map[string]any{"tags": []string{"weft", origin(rule)}},
		}
		if rule.Description != "" {
			sr.FullDescription = &sarifText{Text: rule.Description}
			help := rule.Description
			if rule.Fix != "" {
				help += "\n\nFix: " + rule.Fix
			}
			sr.Help = &sarifText{Text: help, Markdown: "**" + rule.Title + "**\n\n" + help + "\n\nRun `weft vet --explain " + rule.ID + "` for its configuration."}
		}
		driver.Rules = append(driver.Rules, sr)
	}
	results := []sarifResult{}
	for _, f := range r.Findings() {
		i, ok := index[f.Rule]
		if !ok {
			continue
		}
		msg := f.Message(o.pos)
		if f.Environment != "" {
			msg = "[" + f.Environment + "] " + msg
		}
		if f.Excused != "" {
			msg += " (excused: " + f.Excused + ")"
		} else if f.Fix != "" && f.Severity == Deny {
			msg += ". Fix: " + f.Fix
		}
		res := sarifResult{RuleID: f.Rule, RuleIndex: i, Level: level(f.Severity), Message: sarifText{Text: msg}, Properties: map[string]any{}}
		if f.Environment != "" {
			res.Properties["environment"] = f.Environment
		}
		if f.Excused != "" {
			res.Properties["excused"] = f.Excused
		}
		var loc sarifLocation
		if p := o.pos(f.Pos); p.IsValid() && !strings.HasPrefix(p.File, "weft:") {
			loc.PhysicalLocation = &sarifPhysical{ArtifactLocation: sarifArtifact{URI: artifactURI(p.File)}}
			if p.Line > 0 {
				loc.PhysicalLocation.Region = &sarifRegion{StartLine: p.Line, StartColumn: p.Column}
			}
		}
		if f.Path != "" {
			loc.LogicalLocations = []sarifLogical{{FullyQualifiedName: f.Path, Kind: "member"}}
		}
		if loc.PhysicalLocation != nil || loc.LogicalLocations != nil {
			res.Locations = []sarifLocation{loc}
		}
		for i, rel := range f.Related {
			p := o.pos(rel.Pos)
			if !p.IsValid() || strings.HasPrefix(p.File, "weft:") {
				continue
			}
			id := i + 1
			rl := sarifLocation{ID: &id, Message: &sarifText{Text: rel.Msg},
				PhysicalLocation: &sarifPhysical{ArtifactLocation: sarifArtifact{URI: artifactURI(p.File)}}}
			if p.Line > 0 {
				rl.PhysicalLocation.Region = &sarifRegion{StartLine: p.Line, StartColumn: p.Column}
			}
			if rel.Path != "" {
				rl.LogicalLocations = []sarifLogical{{FullyQualifiedName: rel.Path, Kind: "member"}}
			}
			res.RelatedLocations = append(res.RelatedLocations, rl)
		}
		if len(res.Properties) == 0 {
			res.Properties = nil
		}
		results = append(results, res)
	}
	log := sarifLog{Schema: SARIFSchemaURI, Version: "2.1.0", Runs: []sarifRun{{Tool: sarifTool{Driver: driver}, Results: results}}}
	enc := json.NewEncoder(o.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

// ruleName is a rule id in the PascalCase SARIF viewers show.
func ruleName(id string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(id, func(r rune) bool { return r == '_' || r == '.' || r == '-' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func origin(r *Rule) string {
	if r.Builtin {
		return "builtin"
	}
	return "custom"
}

// artifactURI writes a file path as a URI reference: relative paths stay
// relative (GitHub resolves them against the repository's root), absolute
// ones become file URIs.
func artifactURI(p string) string {
	p = strings.ReplaceAll(p, "\\", "/")
	esc := strings.NewReplacer("%", "%25", " ", "%20", "#", "%23", "?", "%3F").Replace(p)
	if strings.HasPrefix(p, "/") {
		return "file://" + esc
	}
	return esc
}

func ctxBackground() context.Context { return context.Background() }

func moduleRoot(dir string) string { return schema.ModuleRoot(dir) }
