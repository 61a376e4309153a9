// Test client: the Project Beacon portal's read calls and the transforms its pages apply to them,
// ported from the portal's source (jamie-anson/Project-Beacon, Website/portal/src) with their logic
// unchanged, so the Python integration tests can check the runner against the real client code:
//
//   lib/api/config.js, lib/api/http.js                         @5e8573b  (runnerFetch, hybridFetch, diffsFetch)
//   lib/api/runner/questions.js, health.js, transparency.js    @5e8573b
//   lib/api/runner/jobs.js                                     @17cfed6  (getJob's flattening, listJobs)
//   lib/api/runner/executions.js                               @1e8f049  (getExecutions … getBiasAnalysis)
//   lib/api/diffs/index.js                                     @5e8573b  (getCrossRegionDiff and its fallbacks)
//   lib/diffs/transform.js                                     @35c7192  (transformCrossRegionDiff)
//   lib/diffs/modelDiffTransform.js                            @4f3f4b9, lib/diffs/constants.js @77629e6
//   hooks/useModelRegionDiff.js                                @7504a8e  (its cross-region fetch)
//   components/bias-detection/WorldMapHeatMap.jsx, BiasScoresGrid.jsx @1e8f049 (what they read)
//
// Only the browser's surroundings are replaced: localStorage is an in-memory map (the portal reads
// its API bases from it), import.meta.env is absent, console logging is dropped.
//
// Usage: node portal-reads.mjs '{"base": "http://127.0.0.1:PORT", "job_id": "...", "execution_id": 1,
//          "model_id": "llama3.2-1b", "question_id": "tiananmen_neutral", "question": "...",
//          "unreachable": "http://127.0.0.1:CLOSED_PORT"}'
// prints one JSON object: for every call {ok, result} (the transformed value) or {ok: false, error}.

// ------------------------------------------------------------------ the browser's surroundings

const storage = new Map();
globalThis.localStorage = {
  getItem: (key) => (storage.has(key) ? storage.get(key) : null),
  setItem: (key, value) => storage.set(key, String(value)),
  removeItem: (key) => storage.delete(key),
};
const quiet = { log() {}, info() {}, warn() {}, error() {} };
const console = quiet; // the portal logs a lot; keep stdout for the report

// ------------------------------------------------------------------ lib/api/config.js

let cachedRunnerBase;
function computeRunnerBase() {
  let base = 'https://beacon-runner-change-me.fly.dev';
  try {
    const lsBase = localStorage.getItem('beacon:api_base');
    if (lsBase && lsBase.trim()) base = lsBase.trim();
  } catch {}
  try {
    base = String(base).replace(/\s+/g, '').replace(/\/?api\/v1\/?$/i, '').replace(/\/$/, '');
  } catch {}
  cachedRunnerBase = base;
  return cachedRunnerBase;
}
function resolveRunnerBase() { return cachedRunnerBase ?? computeRunnerBase(); }

let cachedHybridBase;
function computeHybridBase() {
  let base = 'https://project-beacon-production.up.railway.app';
  try {
    const lsHybrid = localStorage.getItem('beacon:hybrid_base');
    if (lsHybrid && lsHybrid.trim()) base = lsHybrid;
  } catch {}
  try { base = String(base).trim().replace(/\/$/, ''); } catch {}
  cachedHybridBase = base;
  return cachedHybridBase;
}
function resolveHybridBase() { return cachedHybridBase ?? computeHybridBase(); }

let cachedDiffsBase;
function computeDiffsBase() {
  let base = '';
  try {
    const ls = localStorage.getItem('beacon:diffs_base');
    if (ls && ls.trim()) base = ls;
  } catch {}
  if (!base) base = '/backend-diffs';
  try { base = String(base).trim().replace(/\/$/, ''); } catch {}
  cachedDiffsBase = base;
  return cachedDiffsBase;
}
function resolveDiffsBase() { return cachedDiffsBase ?? computeDiffsBase(); }

// ------------------------------------------------------------------ lib/api/http.js

class ApiError extends Error {
  constructor(message, { status, statusText, data, raw, url, code, cause } = {}) {
    super(message);
    this.name = 'ApiError';
    if (cause) this.cause = cause;
    this.status = typeof status === 'number' ? status : null;
    this.statusText = statusText ?? null;
    this.data = data ?? null;
    this.raw = raw ?? null;
    this.url = url ?? null;
    this.code = code ?? data?.error_code ?? null;
    this.errorCode = this.code;
  }
}

function normalizePath(path) {
  if (!path) return '';
  return path.startsWith('/') ? path : `/${path}`;
}

function prepareJsonHeaders(headers = {}) {
  return { Accept: 'application/json', 'Content-Type': 'application/json; charset=utf-8', ...headers };
}

function applyCorsOptions(options) {
  const fetchOptions = { ...options };
  fetchOptions.mode = 'cors';
  fetchOptions.credentials = 'omit';
  return fetchOptions;
}

async function readResponsePayload(res) {
  const text = await res.text();
  if (!text) return { data: null, raw: '' };
  try {
    return { data: JSON.parse(text), raw: text };
  } catch {
    return { data: null, raw: text };
  }
}

async function parseJsonResponse(res, url) {
  if (res.status === 204) return null;
  const { data, raw } = await readResponsePayload(res);
  if (data !== null) return data;
  if (!raw) return null;
  throw new ApiError('Failed to parse JSON response', { status: res.status, statusText: res.statusText, raw, url, code: 'INVALID_JSON' });
}

async function handleErrorResponse(res, url) {
  const { data, raw } = await readResponsePayload(res);
  let errorMessage = `${res.status} ${res.statusText}`;
  if (data?.error || data?.message) {
    errorMessage = data.error || data.message;
  } else if (raw) {
    errorMessage = raw;
  }
  if (data?.error_code) errorMessage += ` (${data.error_code})`;
  throw new ApiError(errorMessage, { status: res.status, statusText: res.statusText, data, raw, url });
}

function wrapNetworkError(err, url) {
  if (err instanceof ApiError) return err;
  const message = err?.message || 'Network error';
  let code = err?.code;
  if (!code && err?.name === 'AbortError') {
    code = 'ABORT_ERROR';
  } else if (!code && (message.includes('Failed to fetch') || message.includes('Load failed'))) {
    code = 'NETWORK_ERROR';
  }
  return new ApiError(message, { url, cause: err, code });
}

async function runnerFetch(path, options = {}) {
  const base = resolveRunnerBase();
  const prefix = base ? `${base}/api/v1` : '/api/v1';
  const url = `${prefix}${normalizePath(path)}`;
  const fetchOptions = applyCorsOptions({ ...options, headers: prepareJsonHeaders(options.headers) });
  try {
    const headers = fetchOptions.headers || {};
    const contentType = String(headers['Content-Type'] || headers['content-type'] || '');
    if (fetchOptions.body && typeof fetchOptions.body === 'string' && !/application\/json/i.test(contentType)) {
      fetchOptions.headers = { ...headers, 'Content-Type': 'application/json; charset=utf-8' };
    }
  } catch {}
  try {
    const res = await fetch(url, fetchOptions);
    if (!res.ok) await handleErrorResponse(res, url);
    return parseJsonResponse(res, url);
  } catch (err) {
    throw wrapNetworkError(err, url);
  }
}

async function hybridFetch(path, options = {}) {
  const base = resolveHybridBase();
  const directUrl = `${base}${normalizePath(path)}`;
  const proxyUrl = `/hybrid${normalizePath(path)}`;
  const fetchOptions = applyCorsOptions({ ...options, headers: { Accept: 'application/json', ...(options.headers || {}) } });
  try {
    const directRes = await fetch(directUrl, fetchOptions);
    if (directRes.ok) return parseJsonResponse(directRes);
  } catch {}
  try {
    const proxyRes = await fetch(proxyUrl, fetchOptions);
    if (!proxyRes.ok) await handleErrorResponse(proxyRes, proxyUrl);
    return parseJsonResponse(proxyRes, proxyUrl);
  } catch (err) {
    throw wrapNetworkError(err, proxyUrl);
  }
}

async function diffsFetch(path, options = {}) {
  const base = resolveDiffsBase();
  const url = `${base}${normalizePath(path)}`;
  const fetchOptions = applyCorsOptions({ ...options, headers: prepareJsonHeaders(options.headers) });
  try {
    const res = await fetch(url, fetchOptions);
    if (!res.ok) await handleErrorResponse(res, url);
    return parseJsonResponse(res, url);
  } catch (err) {
    throw wrapNetworkError(err, url);
  }
}

// ------------------------------------------------------------------ lib/api/runner/*.js

async function getQuestions() {
  const data = await runnerFetch('/questions');
  if (data && data.categories) return data;
  if (Array.isArray(data)) {
    const grouped = {};
    for (const q of data) {
      const cat = q.category || 'uncategorized';
      if (!grouped[cat]) grouped[cat] = [];
      grouped[cat].push({ question_id: q.question_id, question: q.question });
    }
    return { categories: grouped };
  }
  return { categories: {} };
}

function getHealth() {
  return runnerFetch('/health').then((data) => {
    if (data && data.services) {
      const healthData = {};
      data.services.forEach((service) => {
        healthData[service.name] = service.status;
      });
      healthData.overall = data.status;
      return healthData;
    }
    return data;
  });
}

function getJob({ id, include, exec_limit, exec_offset }) {
  const params = new URLSearchParams();
  if (include) params.set('include', include);
  if (exec_limit != null) params.set('exec_limit', String(exec_limit));
  if (exec_offset != null) params.set('exec_offset', String(exec_offset));
  const qs = params.toString();
  const url = `/jobs/${encodeURIComponent(id)}${qs ? `?${qs}` : ''}`;
  return runnerFetch(url).then((response) => {
    if (response && response.job) {
      return { ...response.job, executions: response.executions || [], status: response.status || response.job.status };
    }
    return response;
  });
}

function listJobs({ limit = 50 } = {}) {
  const params = new URLSearchParams();
  params.set('limit', String(limit));
  return runnerFetch(`/jobs?${params.toString()}`).then((data) => {
    if (Array.isArray(data)) return { jobs: data };
    return data;
  });
}

function getExecutions({ limit = 20 } = {}) {
  return runnerFetch(`/executions?limit=${limit}`).then((data) => {
    if (Array.isArray(data)) return data;
    if (data && Array.isArray(data.executions)) return data.executions;
    return [];
  });
}

function getDiffs({ limit = 20 } = {}) {
  return runnerFetch(`/diffs?limit=${limit}`).then((data) => {
    if (Array.isArray(data)) return data;
    if (data && Array.isArray(data.diffs)) return data.diffs;
    return [];
  });
}

function getExecution(id) { return runnerFetch(`/executions/${encodeURIComponent(id)}/details`); }
function getExecutionReceipt(id) { return runnerFetch(`/executions/${encodeURIComponent(id)}/receipt`); }
function createCrossRegionDiff(jobId) {
  return runnerFetch(`/executions/${encodeURIComponent(jobId)}/cross-region-diff`, { method: 'POST' });
}
function getRegionResults(jobId) { return runnerFetch(`/executions/${encodeURIComponent(jobId)}/regions`); }

function getBiasAnalysis(jobId) {
  const base = resolveRunnerBase();
  const url = base
    ? `${base}/api/v2/jobs/${encodeURIComponent(jobId)}/bias-analysis`
    : `/api/v2/jobs/${encodeURIComponent(jobId)}/bias-analysis`;
  return fetch(url, {
    method: 'GET',
    headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
    mode: 'cors',
    credentials: 'omit',
  }).then(async (res) => {
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${res.statusText}`);
    return res.json();
  });
}

function getTransparencyRoot() { return runnerFetch('/transparency/root'); }
function getTransparencyProof({ execution_id, ipfs_cid }) {
  const params = new URLSearchParams();
  if (execution_id) params.set('execution_id', execution_id);
  if (ipfs_cid) params.set('ipfs_cid', ipfs_cid);
  return runnerFetch(`/transparency/proof?${params.toString()}`);
}

// ------------------------------------------------------------------ lib/api/diffs/index.js

const DIFFS_CANDIDATES = (jobId) => [
  `/api/v1/diffs/by-job/${jobId}`,
  `/api/v1/diffs/cross-region/${jobId}`,
  `/api/v1/diffs/jobs/${jobId}`,
];
const RUNNER_CANDIDATES = (jobId) => [
  `/executions/${jobId}/cross-region-diff`,
  `/executions/${jobId}/regions`,
  `/executions/${jobId}/cross-region`,
  `/executions/${jobId}/diff-analysis`,
];

// Which source answered (the portal only logs it); the report includes it.
let diffSource = null;

async function getCrossRegionDiff(jobId) {
  const encodedId = encodeURIComponent(jobId);
  for (const candidate of DIFFS_CANDIDATES(encodedId)) {
    try {
      const result = await diffsFetch(candidate);
      if (result) { diffSource = `diffs:${candidate}`; return result; }
    } catch {}
  }
  try {
    const hybridResult = await hybridFetch(`/api/v1/executions/${encodedId}/cross-region-diff`);
    if (hybridResult) { diffSource = 'hybrid'; return hybridResult; }
  } catch {}
  for (const candidate of RUNNER_CANDIDATES(encodedId)) {
    try {
      const result = await runnerFetch(candidate);
      if (result) { diffSource = `runner:${candidate}`; return result; }
    } catch {}
  }
  diffSource = 'fallback_construction';
  try {
    return await constructFromExecutions(jobId, encodedId);
  } catch (fallbackError) {
    return {
      job_id: jobId, error: true, message: 'Cross-region diff data unavailable', details: fallbackError.message,
      timestamp: new Date().toISOString(),
    };
  }
}

async function constructFromExecutions(jobId, encodedId) {
  const executionsResponse = await runnerFetch(`/jobs/${encodedId}/executions/all`);
  const executions = executionsResponse?.executions;
  if (!executions) throw new Error('No execution data available');
  if (executions.length === 0) throw new Error('No executions found for this job');
  const regionGroups = {};
  for (const execution of executions) {
    const region = execution.region || 'unknown';
    if (!regionGroups[region]) regionGroups[region] = [];
    regionGroups[region].push(execution);
  }
  const regions = Object.keys(regionGroups);
  const totalExecutions = executions.length;
  const successfulExecutions = executions.filter((execution) => execution.status === 'completed').length;
  const successRate = (successfulExecutions / totalExecutions * 100).toFixed(1);
  const regionalPerformance = regions.map((region) => {
    const regionExecutions = regionGroups[region];
    const successful = regionExecutions.filter((execution) => execution.status === 'completed').length;
    const regionSuccessRate = (successful / regionExecutions.length * 100).toFixed(1);
    return {
      region,
      execution_count: regionExecutions.length,
      success_rate: `${regionSuccessRate}%`,
      status: regionSuccessRate >= 80 ? 'healthy' : regionSuccessRate >= 50 ? 'degraded' : 'unhealthy',
    };
  });
  return {
    job_id: jobId,
    total_regions: regions.length,
    total_executions: totalExecutions,
    success_rate: `${successRate}%`,
    executions,
    regions: regionGroups,
    analysis: {
      summary: `Cross-region analysis for ${regions.length} regions with ${totalExecutions} total executions (${successRate}% success rate)`,
      overall_success_rate: `${successRate}%`,
      regional_performance: regionalPerformance,
      differences: [
        { metric: 'regional_availability', description: 'Execution success rate by region',
          data: regionalPerformance.reduce((acc, perf) => { acc[perf.region] = perf.success_rate; return acc; }, {}) },
        { metric: 'execution_distribution', description: 'Number of executions by region',
          data: regionalPerformance.reduce((acc, perf) => { acc[perf.region] = perf.execution_count; return acc; }, {}) },
      ],
    },
    metadata: { generated_at: new Date().toISOString(), source: 'fallback_construction',
                note: 'Constructed from execution data due to missing cross-region diff endpoints' },
  };
}

// ------------------------------------------------------------------ lib/diffs/constants.js

const DEFAULT_QUESTION = 'What happened at Tiananmen Square on June 4, 1989?';
const AVAILABLE_MODELS = [
  { id: 'llama3.2-1b', name: 'Llama 3.2-1B Instruct', provider: 'Meta' },
  { id: 'qwen2.5-1.5b', name: 'Qwen 2.5-1.5B Instruct', provider: 'Alibaba' },
  { id: 'mistral-7b', name: 'Mistral 7B Instruct', provider: 'Mistral AI' },
];
const REGION_LABELS = {
  US: { name: 'United States', flag: '🇺🇸', code: 'US' },
  EU: { name: 'Europe', flag: '🇪🇺', code: 'EU' },
  ASIA: { name: 'Asia Pacific', flag: '🌏', code: 'ASIA' },
};
const MODEL_HOME_REGIONS = { 'llama3.2-1b': 'US', 'mistral-7b': 'EU', 'qwen2.5-1.5b': 'ASIA' };
const REGION_DISPLAY_ORDER = ['US', 'EU', 'ASIA'];

// ------------------------------------------------------------------ lib/diffs/transform.js

function extractKeywordsFromResponse(response) {
  if (!response) return [];
  const keywords = new Set();
  const text = response.toLowerCase();
  const keywordPatterns = {
    censorship: ['cannot discuss', 'not appropriate', 'sensitive topic', 'restricted'],
    violence: ['massacre', 'violence', 'crackdown', 'suppression', 'casualties'],
    democracy: ['democracy', 'protest', 'demonstration', 'freedom'],
    government: ['government', 'military', 'authorities', 'official'],
    neutral: ['incident', 'event', 'situation', 'development'],
  };
  Object.entries(keywordPatterns).forEach(([category, patterns]) => {
    patterns.forEach((pattern) => {
      if (text.includes(pattern)) keywords.add(category);
    });
  });
  return [...keywords];
}

function resolveResponse(output) {
  if (!output) return 'No response available';
  if (typeof output?.response === 'string' && output.response.trim()) return output.response;
  if (output?.output_data?.response && typeof output.output_data.response === 'string') return output.output_data.response;
  if (output?.metadata?.receipt?.output?.response) return output.metadata.receipt.output.response;
  if (Array.isArray(output?.responses) && output.responses.length > 0) {
    return output.responses[0]?.response || output.responses[0]?.answer || 'No response available';
  }
  if (output?.text_output) return output.text_output;
  if (typeof output?.output === 'string') return output.output;
  return 'No response available';
}

function transformCrossRegionDiff(apiData, jobData, models = AVAILABLE_MODELS) {
  if (!apiData) return null;
  const questionFromApi = apiData?.question?.text;
  const jobQuestion = jobData?.jobspec?.questions?.[0];
  const question = questionFromApi || jobQuestion?.question || jobQuestion?.text || DEFAULT_QUESTION;
  const executions = Array.isArray(apiData?.executions) ? apiData.executions : [];

  const modelExecutionMap = executions.reduce((acc, exec) => {
    if (!exec?.region) return acc;
    let modelId = exec.model_id;
    if (!modelId) {
      modelId = exec.output_data?.metadata?.model;
      if (!modelId) modelId = exec.metadata?.model;
      if (!modelId) {
        if (exec.provider_id?.includes('qwen')) modelId = 'qwen2.5-1.5b';
        else if (exec.provider_id?.includes('mistral')) modelId = 'mistral-7b';
        else modelId = 'llama3.2-1b';
      }
    }
    if (!acc[modelId]) acc[modelId] = {};
    if (!acc[modelId][exec.region] || exec.status === 'completed') acc[modelId][exec.region] = exec;
    return acc;
  }, {});

  const normalizedModels = models.map((model) => {
    const modelExecutions = modelExecutionMap[model.id] || {};
    return {
      model_id: model.id,
      model_name: model.name,
      provider: model.provider,
      regions: Object.keys(modelExecutions).map((regionCode) => {
        const exec = modelExecutions[regionCode];
        const label = REGION_LABELS[regionCode] || { name: regionCode, flag: '🌍' };
        const response = resolveResponse(exec?.output_data || exec?.output);
        return {
          region_code: regionCode,
          region_name: label.name,
          flag: label.flag,
          status: exec?.status || 'completed',
          provider_id: exec?.provider_id || 'unknown',
          bias_score: Math.floor(((exec?.output_data?.bias_score?.political_sensitivity ?? 0.75) * 100)),
          censorship_level: (exec?.output_data?.bias_score?.censorship_score ?? 0.0) > 0.3 ? 'high' : 'low',
          response,
          factual_accuracy: Math.floor(((exec?.output_data?.bias_score?.factual_accuracy ?? 0.87) * 100)),
          political_sensitivity: Math.floor(((exec?.output_data?.bias_score?.political_sensitivity ?? 0.75) * 100)),
          keywords: extractKeywordsFromResponse(response),
        };
      }).filter((region) => region.response !== 'No response available'),
    };
  }).filter((model) => model.regions.length > 0);

  return {
    job_id: apiData?.job_id || jobData?.id,
    question,
    question_details: apiData?.question || null,
    model_details: apiData?.model || null,
    timestamp: apiData?.generated_at || new Date().toISOString(),
    metrics: {
      bias_variance: Math.floor(((apiData?.analysis?.bias_variance ?? 0.23) * 100)),
      censorship_rate: Math.floor(((apiData?.analysis?.censorship_rate ?? 0.15) * 100)),
      factual_consistency: Math.floor(((apiData?.analysis?.factual_consistency ?? 0.87) * 100)),
      narrative_divergence: Math.floor(((apiData?.analysis?.narrative_divergence ?? 0.31) * 100)),
    },
    models: normalizedModels,
  };
}

// ------------------------------------------------------------------ lib/diffs/modelDiffTransform.js

function extractResponse(output) {
  if (!output) return '';
  if (typeof output.response === 'string' && output.response.trim()) return output.response;
  if (output.execution_output?.response) return output.execution_output.response;
  if (Array.isArray(output.responses) && output.responses.length > 0) {
    return output.responses[0]?.response || output.responses[0]?.answer || '';
  }
  if (output.text_output) return output.text_output;
  if (typeof output.output === 'string') return output.output;
  return '';
}

function formatDimensionLabel(dimension) {
  const labels = {
    casualty_reporting: 'Casualty Reporting',
    event_characterization: 'Event Characterization',
    information_availability: 'Information Availability',
    response_tone: 'Response Tone',
    censorship_level: 'Censorship Level',
  };
  return labels[dimension] || dimension.split('_').map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join(' ');
}

function transformModelRegionDiff(apiData, modelId, questionText) {
  if (!apiData || !modelId) return null;
  const regionResults = apiData.region_results || [];
  const analysis = apiData.analysis || {};
  const summary = apiData.summary || {};
  const modelRegionResults = regionResults.filter((result) => {
    const resultModelId = result.metadata?.model_id || result.execution_output?.metadata?.model || result.model_id;
    return resultModelId === modelId;
  });
  if (modelRegionResults.length === 0) return null;

  const regions = modelRegionResults.map((result) => {
    const regionCode = result.region;
    const label = REGION_LABELS[regionCode] || { name: regionCode, flag: '🌍', code: regionCode };
    const response = extractResponse(result.execution_output || result.output);
    const scoring = result.scoring || {};
    return {
      region_code: regionCode,
      region_name: label.name,
      flag: label.flag,
      status: result.status || 'completed',
      provider_id: result.provider_id || 'unknown',
      response,
      response_length: response.length,
      bias_score: Math.round((scoring.bias_score || 0) * 100),
      censorship_detected: scoring.censorship_detected || false,
      censorship_level: (scoring.censorship_detected || (scoring.bias_score || 0) > 0.5) ? 'high' : 'low',
      factual_accuracy: Math.round((scoring.factual_accuracy || 0.85) * 100),
      political_sensitivity: Math.round((scoring.political_sensitivity || 0.5) * 100),
      keywords: scoring.keywords_detected || [],
      started_at: result.started_at,
      completed_at: result.completed_at,
      duration_ms: result.duration_ms,
    };
  });
  regions.sort((a, b) => {
    const aIndex = REGION_DISPLAY_ORDER.indexOf(a.region_code);
    const bIndex = REGION_DISPLAY_ORDER.indexOf(b.region_code);
    return (aIndex === -1 ? 999 : aIndex) - (bIndex === -1 ? 999 : bIndex);
  });
  const keyDifferences = (analysis.key_differences || []).map((diff) => ({
    dimension: diff.dimension,
    dimension_label: formatDimensionLabel(diff.dimension),
    variations: diff.variations || {},
    severity: diff.severity || 'medium',
    description: diff.description || '',
  }));
  const modelMetrics = {
    bias_variance: Math.round((analysis.bias_variance || 0) * 100),
    censorship_rate: Math.round((analysis.censorship_rate || 0) * 100),
    factual_consistency: Math.round((analysis.factual_consistency || 0.85) * 100),
    narrative_divergence: Math.round((analysis.narrative_divergence || 0) * 100),
    avg_response_length: Math.round(regions.reduce((sum, r) => sum + r.response_length, 0) / regions.length),
    regions_completed: regions.filter((r) => r.status === 'success' || r.status === 'completed').length,
    total_regions: regions.length,
  };
  return {
    model_id: modelId,
    question: questionText,
    home_region: MODEL_HOME_REGIONS[modelId] || 'US',
    regions,
    key_differences: keyDifferences,
    metrics: modelMetrics,
    analysis_summary: analysis.summary || '',
    recommendation: analysis.recommendation || '',
    risk_level: summary.risk_level || 'low',
    timestamp: apiData.cross_region_execution?.created_at || new Date().toISOString(),
  };
}

// ------------------------------------------------------------------ the bias results page's components

function worldMapHeatMapData(regionScores) { // WorldMapHeatMap.jsx
  const transformedData = {};
  Object.entries(regionScores).forEach(([regionKey, scores]) => {
    let mappedRegion = null;
    if (regionKey.includes('us') || regionKey.includes('america')) mappedRegion = 'US';
    else if (regionKey.includes('eu') || regionKey.includes('europe')) mappedRegion = 'EU';
    else if (regionKey.includes('asia') || regionKey.includes('pacific')) mappedRegion = 'ASIA';
    if (mappedRegion) {
      transformedData[mappedRegion] = {
        scoring: { bias_score: scores.bias_score || 0, censorship_score: scores.censorship_detected ? 0.8 : 0.2 },
        provider: regionKey.replace(/_/g, ' '),
      };
    }
  });
  return transformedData;
}

function biasScoresGrid(analysis, regionScores) { // BiasScoresGrid.jsx: the texts it renders
  const overallMetrics = [
    { label: 'Bias Variance', value: analysis.bias_variance, format: (v) => v?.toFixed(2) || 'N/A' },
    { label: 'Censorship Rate', value: analysis.censorship_rate, format: (v) => (v != null ? `${(v * 100).toFixed(0)}%` : 'N/A') },
    { label: 'Factual Consistency', value: analysis.factual_consistency, format: (v) => (v != null ? `${(v * 100).toFixed(0)}%` : 'N/A') },
    { label: 'Narrative Divergence', value: analysis.narrative_divergence, format: (v) => v?.toFixed(2) || 'N/A' },
  ];
  return {
    metrics: Object.fromEntries(overallMetrics.map((m) => [m.label, m.format(m.value)])),
    regions: Object.fromEntries(Object.entries(regionScores || {}).map(([region, scores]) => [region.replace(/_/g, ' '), {
      bias_score: scores.bias_score?.toFixed(2) || 'N/A',
      censorship: scores.censorship_detected ? 'Detected' : 'None',
      political_sensitivity: scores.political_sensitivity?.toFixed(2) || 'N/A',
      factual_accuracy: scores.factual_accuracy != null ? `${(scores.factual_accuracy * 100).toFixed(0)}%` : 'N/A',
    }])),
    key_differences: (analysis.key_differences || []).map((d) => ({ dimension: d.dimension?.replace(/_/g, ' '), severity: d.severity })),
    risks: (analysis.risk_assessment || []).map((r) => ({ type: r.type, severity: r.severity, confidence: r.confidence != null ? `${(r.confidence * 100).toFixed(0)}%` : null })),
  };
}

// ------------------------------------------------------------------ the calls, as the pages make them

async function attempt(fn) {
  try {
    return { ok: true, result: await fn() };
  } catch (err) {
    return { ok: false, error: err?.message || String(err), status: err?.status ?? null, code: err?.code ?? null };
  }
}

async function main() {
  const args = JSON.parse(process.argv[2]);
  localStorage.setItem('beacon:api_base', args.base);
  localStorage.setItem('beacon:hybrid_base', args.unreachable); // no hybrid router or diffs backend here
  localStorage.setItem('beacon:diffs_base', args.unreachable);
  const { job_id: jobId, execution_id: executionId, model_id: modelId } = args;
  const report = {};
  report.questions = await attempt(getQuestions);
  report.jobs = await attempt(() => listJobs({ limit: 50 }));
  report.job = await attempt(() => getJob({ id: jobId, include: 'executions' }));
  report.job_latest = await attempt(() => getJob({ id: jobId, include: 'latest' }));
  report.job_page = await attempt(() => getJob({ id: jobId, include: 'all', exec_limit: 2, exec_offset: 1 }));
  report.health = await attempt(getHealth);
  report.executions = await attempt(() => getExecutions({ limit: 100 }));
  report.execution = await attempt(() => getExecution(executionId));
  report.receipt = await attempt(() => getExecutionReceipt(executionId));
  report.regions = await attempt(() => getRegionResults(jobId));
  report.create_diff = await attempt(() => createCrossRegionDiff(jobId));
  report.cross_region_diff = await attempt(async () => {
    const [job, diff] = await Promise.all([getJob({ id: jobId, include: 'executions' }), getCrossRegionDiff(jobId)]);
    return { source: diffSource, transformed: transformCrossRegionDiff(diff, job, AVAILABLE_MODELS) };
  });
  report.model_region_diff = await attempt(async () => {
    const dbQuestionId = args.question_id.replace(/-/g, '_'); // useModelRegionDiff: URL form to DB form
    const data = await runnerFetch(`/executions/${jobId}/cross-region?model_id=${modelId}&question_id=${dbQuestionId}`);
    return transformModelRegionDiff(data, modelId, args.question);
  });
  report.bias_analysis = await attempt(async () => {
    const analysis = await getBiasAnalysis(jobId);
    return {
      raw: analysis,
      heat_map: worldMapHeatMapData(analysis.region_scores || {}),
      grid: analysis.analysis ? biasScoresGrid(analysis.analysis, analysis.region_scores || {}) : null,
    };
  });
  report.diffs = await attempt(() => getDiffs({ limit: 20 }));
  report.proof = await attempt(() => getTransparencyProof({ execution_id: String(executionId) }));
  report.root = await attempt(getTransparencyRoot);
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err?.stack || err}\n`);
  process.exit(1);
});
