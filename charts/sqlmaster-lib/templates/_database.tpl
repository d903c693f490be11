{{/*
Your own database (docs/cluster.md, "Your own database on the cluster"; values `database.*`).
- database.dataDir: a `sqlmaster data from-db` folder on the claim (train.jsonl, test.jsonl, dataset.json);
  training reads it (`--set data.source=DIR`), evaluation its test split (`--dataset DIR/test.jsonl`).
- database.source: build that folder in the pod first, in the initContainer `from-db`
  (`sqlmaster data from-db SOURCE --output-dir DIR`, read-only). SOURCE is a file on the claim or a server URL
  without its password; the password is the Secret database.passwordSecret, mounted as a file only into that
  initContainer and read through SQLMASTER_DB_PASSWORD_FILE. The main container never sees it.
*/}}

{{/* The folder where the Secret holding the database password is mounted (read-only, that key only). */}}
{{- define "sqlmaster-lib.dbSecretDir" -}}
/var/run/secrets/sqlmaster-db
{{- end -}}

{{/* ctx: the run's from-db folder: database.dataDir, else <outputDir>/from-db when database.source is set, else "". */}}
{{- define "sqlmaster-lib.fromDbDir" -}}
{{- $db := default (dict) .root.Values.database -}}
{{- if $db.dataDir -}}
{{- trimSuffix "/" (toString $db.dataDir) -}}
{{- else if $db.source -}}
{{- printf "%s/from-db" (include "sqlmaster-lib.outputDir" .) -}}
{{- end -}}
{{- end -}}

{{/* ctx: what the main command adds to read the from-db folder (a JSON list; empty without one). */}}
{{- define "sqlmaster-lib.fromDbArgs" -}}
{{- $dir := include "sqlmaster-lib.fromDbDir" . -}}
{{- if not $dir -}}
[]
{{- else if eq (include "sqlmaster-lib.task" .root) "train" -}}
{{- toJson (list "--set" (printf "data.source=%s" $dir)) -}}
{{- else -}}
{{- toJson (list "--dataset" (printf "%s/test.jsonl" $dir)) -}}
{{- end -}}
{{- end -}}

{{/* A URL with its password (user:PASSWORD@) shown as ***, for validateValues' messages. */}}
{{- define "sqlmaster-lib.redactUrl" -}}
{{- $shown := regexReplaceAll "^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):.*@" (toString .) "${1}:***@" -}}
{{- if not (contains "://" $shown) -}}{{- $shown = regexReplaceAll "^([^/@:]*):.*@" $shown "${1}:***@" -}}{{- end -}}
{{- regexReplaceAll "(?i)password=[^&]*" $shown "password=***" -}}
{{- end -}}

{{/* A URL without its password (the form database.source takes), for the fix validateValues names. */}}
{{- define "sqlmaster-lib.withoutPassword" -}}
{{- $shown := include "sqlmaster-lib.redactUrl" . | replace ":***@" "@" -}}
{{- regexReplaceAll "[?&]$" (regexReplaceAll "(?i)password=\\*\\*\\*&?" $shown "") "" -}}
{{- end -}}

{{/* Problems with database.* (a JSON list of "what. Fix: --set ..." lines for validateValues). */}}
{{- define "sqlmaster-lib.validateDatabase" -}}
{{- $db := default (dict) .Values.database -}}
{{- $problems := list -}}
{{- $source := toString (default "" $db.source) -}}
{{- $dir := toString (default "" $db.dataDir) -}}
{{- $data := include "sqlmaster-lib.dataDir" . -}}
{{- $isUrl := regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://" $source -}}
{{- if and $isUrl (or (regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:.*@" $source) (regexMatch "(?i)password=" $source)) -}}
{{- $problems = append $problems (printf "database.source %s holds a password: it would be stored in the Job, readable by anyone who can read Jobs. Fix: put it in a Secret (kubectl create secret generic my-db --from-file=password=FILE), then --set database.source=%s,database.passwordSecret=my-db (sqlctl: --from-db URL --db-secret my-db)" (include "sqlmaster-lib.redactUrl" $source) (include "sqlmaster-lib.withoutPassword" $source)) -}}
{{- else if and $isUrl (not (regexMatch "^(postgresql|postgres|mysql|mariadb)://" $source)) -}}
{{- $problems = append $problems (printf "database.source %s is not a server URL sqlmaster reads (postgresql://, postgres://, mysql://, mariadb://). Fix: --set database.source=postgresql://reader@db:5432/shop" (include "sqlmaster-lib.redactUrl" $source)) -}}
{{- else if and $source (not $isUrl) (not (regexMatch (printf "^%s(/[^/]+)+$" $data) $source)) -}}
{{- $problems = append $problems (printf "database.source %q is neither a server URL (postgresql://reader@db:5432/shop) nor a file the pod can see (the claim, at %s). Fix: --set database.source=%s/db/shop.sqlite after copying the database onto the claim" (include "sqlmaster-lib.redactUrl" $source) $data $data) -}}
{{- end -}}
{{- if and $source (not $isUrl) (regexMatch "(^|/)\\.\\.(/|$)" $source) -}}
{{- $problems = append $problems (printf "database.source %q has a '..'. Fix: --set database.source=%s/db/shop.sqlite" (include "sqlmaster-lib.redactUrl" $source) $data) -}}
{{- end -}}
{{- if and $dir (or (not (regexMatch (printf "^%s(/[^/]+)+/?$" $data) $dir)) (regexMatch "(^|/)\\.\\.(/|$)" $dir)) -}}
{{- $problems = append $problems (printf "database.dataDir %q must be a folder on the claim, an absolute path under %s without '..'. Fix: --set database.dataDir=%s/from-db/shop" $dir $data $data) -}}
{{- end -}}
{{- if and $db.passwordSecret (not $source) -}}
{{- $problems = append $problems (printf "database.passwordSecret %s is set but database.source is empty: nothing connects to a server. Fix: --set database.source=postgresql://reader@db:5432/shop, or --set database.passwordSecret=" (toString $db.passwordSecret)) -}}
{{- end -}}
{{- if and $db.passwordSecret (not $db.passwordKey) -}}
{{- $problems = append $problems "database.passwordKey is empty: the key of the password in the Secret. Fix: --set database.passwordKey=password" -}}
{{- end -}}
{{- range $i, $run := .Values.runs -}}
{{- if and $source (gt (int (default 1 $run.nodes)) 1) -}}
{{- $problems = append $problems (printf "runs[%d].nodes=%d with database.source: every node would read the database and write the folder at once. Fix: build it once (a 1-node run, or sqlmaster data from-db SOURCE -o DIR, copied onto the claim), then --set database.source=,database.dataDir=%s/from-db/shop" $i (int $run.nodes) $data) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* ctx: the initContainer that builds the from-db folder (rendered only with database.source). */}}
{{- define "sqlmaster-lib.fromDbContainer" -}}
{{- $root := .root -}}
{{- $db := $root.Values.database -}}
{{- $res := default $root.Values.resources .run.resources -}}
- name: from-db
  image: {{ printf "%s:%s" $root.Values.image.repository (toString $root.Values.image.tag) | quote }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command: {{ toJson (list "sqlmaster" "data" "from-db" (toString $db.source) "--output-dir" (include "sqlmaster-lib.fromDbDir" .)) }}
  env:
    - name: PYTHONUNBUFFERED
      value: "1"
    {{- if $db.passwordSecret }}
    - name: SQLMASTER_DB_PASSWORD_FILE
      value: {{ printf "%s/password" (include "sqlmaster-lib.dbSecretDir" $root) | quote }}
    {{- end }}
  resources:
    requests:
      {{- toYaml (omit (default (dict) $res.requests) "nvidia.com/gpu") | nindent 6 }}
    limits:
      {{- toYaml (omit (default (dict) $res.limits) "nvidia.com/gpu") | nindent 6 }}
  securityContext:
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    privileged: false
    capabilities:
      drop: [ALL]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
    - name: data
      mountPath: {{ include "sqlmaster-lib.dataDir" $root }}
    {{- if $db.passwordSecret }}
    - name: db-password
      mountPath: {{ include "sqlmaster-lib.dbSecretDir" $root }}
      readOnly: true
    {{- end }}
{{- end -}}
