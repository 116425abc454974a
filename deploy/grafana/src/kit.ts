// Small builders for the RelayChat dashboards. Every object they return is typed with @grafana/schema (the
// dashboard model, and each panel plugin's own options and field config), so `tsc --noEmit` rejects a misspelt
// option or a wrong enum value. The dashboards themselves (cluster-overview.ts, node-detail.ts, redis-fanout.ts)
// only say what to show and in which order; the grid positions and panel ids are computed here.
import type {
  AxisPlacement,
  BigValueColorMode,
  BigValueGraphMode,
  BigValueJustifyMode,
  BigValueTextMode,
  GraphDrawStyle,
  GraphGradientMode,
  GraphThresholdsStyleMode,
  HeatmapCellLayout,
  LegendDisplayMode,
  LineInterpolation,
  MappingType,
  PercentChangeColorMode,
  ScaleDistribution,
  SortOrder,
  StackingMode,
  ThresholdsMode,
  TooltipDisplayMode,
  VisibilityMode,
  VizOrientation,
} from '@grafana/schema';
import type {
  DataSourceRef,
  FieldConfigSource,
  Panel,
  RowPanel,
  Threshold,
  ValueMapping,
  VariableModel,
} from '@grafana/schema';
import type {
  Options as TimeSeriesOptions,
  FieldConfig as TimeSeriesFieldConfig,
} from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';
import type { Options as StatOptions } from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type {
  HeatmapColorMode,
  HeatmapColorScale,
  HeatmapSelectionMode,
  Options as HeatmapOptions,
  FieldConfig as HeatmapFieldConfig,
} from '@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen';

/**
 * A string enum member of @grafana/schema by its value: `e<LegendDisplayMode>('list')`. Only the enum's values
 * type-check, and nothing of @grafana/schema is needed at run time (its ESM build does not load under Jest).
 */
function e<T extends string>(value: `${T}`): T {
  return value as T;
}

/**
 * The panel model keeps plugin options as `Record<string, unknown>`; an interface has no index signature, so the
 * typed options are passed through this identity (a mapped type, which has one).
 */
function plain<T extends object>(value: T): { [K in keyof T]: T[K] } {
  return value;
}

/** Every panel queries the Prometheus chosen in the dashboard's `datasource` variable. */
export const datasource: DataSourceRef = { type: 'prometheus', uid: '${datasource}' };

/** A Prometheus query as the Grafana Prometheus data source stores it. */
export interface PromTarget extends Record<string, unknown> {
  refId: string;
  datasource: DataSourceRef;
  expr: string;
  legendFormat: string;
  range: boolean;
  instant: boolean;
  format?: 'time_series' | 'heatmap' | 'table';
  editorMode: 'code';
}

export interface Query {
  expr: string;
  legend?: string;
}

function targets(queries: Query[], format?: PromTarget['format']): PromTarget[] {
  return queries.map((q, i) => ({
    refId: String.fromCharCode(65 + i),
    datasource,
    expr: q.expr,
    legendFormat: q.legend ?? '__auto',
    range: true,
    instant: false,
    ...(format ? { format } : {}),
    editorMode: 'code',
  }));
}

/** A panel before layout: its width and height in grid units (24 columns), the rest filled in by `layout`. */
export interface Sized {
  w: number;
  h: number;
  panel: Panel;
}

interface Common {
  title: string;
  description: string;
  queries: Query[];
  unit?: string;
  w?: number;
  h?: number;
}

const green: Threshold = { color: 'green', value: null };

export interface TimeSeriesSpec extends Common {
  stack?: boolean;
  min?: number;
  /** Values above this are drawn red (a dashed line at the threshold). */
  warnAbove?: number;
}

export function timeseries(spec: TimeSeriesSpec): Sized {
  const options: TimeSeriesOptions = {
    legend: {
      showLegend: true,
      displayMode: e<LegendDisplayMode>('list'),
      placement: 'bottom',
      calcs: [],
    },
    tooltip: { mode: e<TooltipDisplayMode>('multi'), sort: e<SortOrder>('desc') },
  };
  const custom: TimeSeriesFieldConfig = {
    drawStyle: e<GraphDrawStyle>('line'),
    lineInterpolation: e<LineInterpolation>('linear'),
    lineWidth: 1,
    fillOpacity: spec.stack ? 30 : 10,
    gradientMode: e<GraphGradientMode>('none'),
    showPoints: e<VisibilityMode>('never'),
    spanNulls: false,
    axisPlacement: e<AxisPlacement>('auto'),
    scaleDistribution: { type: e<ScaleDistribution>('linear') },
    stacking: { mode: spec.stack ? e<StackingMode>('normal') : e<StackingMode>('none'), group: 'A' },
    thresholdsStyle: {
      mode:
        spec.warnAbove !== undefined
          ? e<GraphThresholdsStyleMode>('dashed')
          : e<GraphThresholdsStyleMode>('off'),
    },
  };
  const fieldConfig: FieldConfigSource = {
    defaults: {
      custom: plain(custom),
      unit: spec.unit ?? 'short',
      ...(spec.min !== undefined ? { min: spec.min } : {}),
      thresholds: {
        mode: e<ThresholdsMode>('absolute'),
        steps: spec.warnAbove !== undefined ? [green, { color: 'red', value: spec.warnAbove }] : [green],
      },
    },
    overrides: [],
  };
  return {
    w: spec.w ?? 12,
    h: spec.h ?? 8,
    panel: {
      type: 'timeseries',
      title: spec.title,
      description: spec.description,
      datasource,
      targets: targets(spec.queries),
      options: plain(options),
      fieldConfig,
    },
  };
}

export interface StatSpec extends Common {
  /** Threshold steps after the base color, e.g. [{ color: 'red', value: 1 }]. */
  steps?: Threshold[];
  base?: string;
  mappings?: ValueMapping[];
  decimals?: number;
}

export function stat(spec: StatSpec): Sized {
  const options: StatOptions = {
    reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
    orientation: e<VizOrientation>('auto'),
    textMode: e<BigValueTextMode>('auto'),
    colorMode: e<BigValueColorMode>('value'),
    graphMode: e<BigValueGraphMode>('area'),
    justifyMode: e<BigValueJustifyMode>('auto'),
    showPercentChange: false,
    percentChangeColorMode: e<PercentChangeColorMode>('standard'),
    wideLayout: true,
  };
  const fieldConfig: FieldConfigSource = {
    defaults: {
      unit: spec.unit ?? 'short',
      ...(spec.decimals !== undefined ? { decimals: spec.decimals } : {}),
      mappings: spec.mappings ?? [],
      thresholds: {
        mode: e<ThresholdsMode>('absolute'),
        steps: [{ color: spec.base ?? 'green', value: null }, ...(spec.steps ?? [])],
      },
    },
    overrides: [],
  };
  return {
    w: spec.w ?? 4,
    h: spec.h ?? 4,
    panel: {
      type: 'stat',
      title: spec.title,
      description: spec.description,
      datasource,
      targets: targets(spec.queries),
      options: plain(options),
      fieldConfig,
    },
  };
}

/** Show values as words: valueText({ 0: 'no', 1: 'yes' }). */
export function valueText(texts: Record<number, string>): ValueMapping[] {
  const options: Record<string, { text: string; index: number }> = {};
  Object.entries(texts).forEach(([value, text], index) => {
    options[value] = { text, index };
  });
  return [{ type: e<MappingType.ValueToText>('value'), options }];
}

export interface HeatmapSpec extends Common {
  queries: [Query];
}

/** A heatmap of a Prometheus histogram: the query must return `le`-labelled bucket increases. */
export function heatmap(spec: HeatmapSpec): Sized {
  const options: HeatmapOptions = {
    calculate: false,
    cellGap: 1,
    color: {
      mode: e<HeatmapColorMode>('scheme'),
      scheme: 'Spectral',
      scale: e<HeatmapColorScale>('exponential'),
      exponent: 0.5,
      fill: 'dark-orange',
      reverse: false,
      steps: 64,
    },
    exemplars: { color: 'rgba(255,0,255,0.7)' },
    filterValues: { le: 1e-9 },
    legend: { show: true },
    rowsFrame: { layout: e<HeatmapCellLayout>('auto') },
    selectionMode: e<HeatmapSelectionMode>('x'),
    showValue: e<VisibilityMode>('never'),
    tooltip: { mode: e<TooltipDisplayMode>('single'), yHistogram: true, showColorScale: false },
    yAxis: { axisPlacement: e<AxisPlacement>('left'), unit: spec.unit ?? 's', reverse: false },
  };
  const custom: HeatmapFieldConfig = {
    hideFrom: { legend: false, tooltip: false, viz: false },
    scaleDistribution: { type: e<ScaleDistribution>('linear') },
  };
  return {
    w: spec.w ?? 12,
    h: spec.h ?? 8,
    panel: {
      type: 'heatmap',
      title: spec.title,
      description: spec.description,
      datasource,
      targets: targets(spec.queries, 'heatmap'),
      options: plain(options),
      fieldConfig: { defaults: { custom: plain(custom) }, overrides: [] },
    },
  };
}

export interface Section {
  title: string;
  panels: Sized[];
}

/**
 * Lays sections out top to bottom: a row header, then the section's panels left to right, wrapping at 24
 * columns. Panel ids are assigned in order, starting at 1.
 */
export function layout(sections: Section[]): Array<Panel | RowPanel> {
  const out: Array<Panel | RowPanel> = [];
  let id = 1;
  let y = 0;
  for (const section of sections) {
    out.push({
      type: 'row',
      id: id++,
      title: section.title,
      collapsed: false,
      panels: [],
      gridPos: { x: 0, y, w: 24, h: 1 },
    });
    y += 1;
    let x = 0;
    let rowHeight = 0;
    for (const { w, h, panel } of section.panels) {
      if (x + w > 24) {
        y += rowHeight;
        x = 0;
        rowHeight = 0;
      }
      out.push({ ...panel, id: id++, gridPos: { x, y, w, h } });
      x += w;
      rowHeight = Math.max(rowHeight, h);
    }
    y += rowHeight;
  }
  return out;
}

/** The data source picker every dashboard starts with. */
export const datasourceVariable: VariableModel = {
  type: 'datasource',
  name: 'datasource',
  label: 'Data source',
  query: 'prometheus',
  refresh: 1,
  hide: 0,
  current: { text: 'default', value: 'default' },
  options: [],
  regex: '',
};

/** `$node`: one or more gateway nodes by their node_id label (All = `.*`). */
export const nodeVariable: VariableModel = {
  type: 'query',
  name: 'node',
  label: 'Node',
  datasource,
  query: {
    query: 'label_values(gateway_ready, node_id)',
    refId: 'PrometheusVariableQueryEditor-VariableQuery',
  },
  refresh: 2,
  sort: 7,
  multi: true,
  includeAll: true,
  allValue: '.*',
  hide: 0,
  current: { text: ['All'], value: ['$__all'] },
  options: [],
  regex: '',
};

/** Fields every RelayChat dashboard shares. */
export const dashboardDefaults = {
  editable: true,
  graphTooltip: 1,
  fiscalYearStartMonth: 0,
  liveNow: false,
  refresh: '10s',
  schemaVersion: 39,
  version: 1,
  time: { from: 'now-1h', to: 'now' },
  timepicker: {},
  timezone: 'browser',
  weekStart: '',
  annotations: {
    list: [
      {
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      },
    ],
  },
  links: [
    {
      title: 'RelayChat',
      type: 'dashboards' as const,
      tags: ['relaychat'],
      asDropdown: true,
      includeVars: true,
      keepTime: true,
      icon: 'external link',
      targetBlank: false,
      tooltip: '',
      url: '',
    },
  ],
};
