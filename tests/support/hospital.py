"""The worked example's hospital override (docs/writing-and-testing-a-rule.md), shared by the
hospital-IT tests: it loads cleanly on top of the bundled packs."""

HOSPITAL_X = """\
pack: {id: hospital-x, version: 2026.1.0, title: {en: Hospital X local settings}, locales: [en]}
references:
  hospital-x-nc12:
    citation: "Hospital X nutrition committee, policy NC-12 (2026): grip cut-offs for our dynamometer."
    short: Hospital X NC-12
code_systems:
  hx-lab: urn:oid:1.2.826.0.1.999.42
value_sets:
  grip-strength:
    - {system: hx-lab, code: GRIPMAX}
parameters:
  grip_low:
    unit: kg
    profiles:
      ewgsop2: {male: 30, female: 18, source: hospital-x-nc12}
      awgs2019: {male: 28, female: 18, source: chen-2020}
"""
