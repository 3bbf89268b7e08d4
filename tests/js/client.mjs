#!/usr/bin/env node
// Drive the official dxFeed JavaScript DXLink client (@dxfeed/dxlink-api, unchanged) against a
// DXLink endpoint, normally the tastyrec simulator; used by tests/integration/test_js_client.py.
//
// Usage: node tests/js/client.mjs URL TOKEN SECONDS SYMBOL...
//   TOKEN    quote token; "" or "-" = none (the server must authorise without AUTH)
//   SECONDS  run time; the process always exits by then (hard timeout)
//   SYMBOL   plain symbols get Quote, Trade, Summary, Profile, TimeAndSale and Candle SYM{=1m}
//            (fromTime one hour ago); option symbols (leading '.') get Greeks and TheoPrice.
//
// Candles go on a FEED channel of their own, opened with contract DXLINK_CANDLE_CONTRACT
// (default HISTORY): the JS client chooses the contract per DXLinkFeed (its constructor's
// FeedContract argument). Production serves candle history only on HISTORY; on AUTO it sends one
// empty snapshot (FIELD_REPORTS.md #3). Every other type shares one AUTO feed.
//
// stdout: one JSON object per line.
//   {"eventType": ..., "eventSymbol": ..., <fields>}  one per received event, values as decoded
//                                                   by the client ("NaN" strings stay strings)
//   {"state": "connection:CONNECTED", "t": ms}       client, auth and channel state changes, and
//                                                   app actions ("app:reauth", "app:reconnect")
//   {"requested": {type: [field...]} | null}          the acceptEventFields sent (first line)
//   {"config": {...}}                                each FEED_CONFIG as merged by the client
//   {"error": {"type": ..., "message": ...}}         DXLink errors published by the client
//   {"log": "error"|"warn", "message": ...}          anything the client logged via console
//   {"summary": {type: count}, "states": [...], "errors": n, "logs": n}   last line
// Exit status: 0 when nothing went wrong; 1 when an error was published or logged (DXLink error
// types listed in the env var DXLINK_TOLERATE_ERRORS, comma separated, are reported but
// tolerated); 2 on bad usage or an uncaught exception.
// DXLINK_TRACE=1 writes every raw frame to stderr as {"dir": ">"|"<", "frame": "..."}.
// DXLINK_SETUP chooses what feed.configure() asks for in FEED_SETUP (every field is optional), as
// comma-separated words: "period" (acceptAggregationPeriod 0.1), "format" (acceptDataFormat
// COMPACT), "FULL" (acceptDataFormat FULL), "fields" (acceptEventFields below), "eventType"
// (with "eventType" first in every field list). Default "period,format,fields"; "" asks for
// nothing, and the client then sends no FEED_SETUP at all.
//
// Node 20 has no global WebSocket and the client calls `new WebSocket(url)`, so the `ws`
// package is installed as globalThis.WebSocket (always, so every Node version runs the same
// transport). The CommonJS build of the client is loaded through createRequire because its ESM
// build sits in a package without "type": "module".

import { createRequire } from 'node:module'

import WebSocketImpl from 'ws'

const require = createRequire(import.meta.url)
const {
  DXLinkWebSocketClient,
  DXLinkFeed,
  FeedContract,
  FeedDataFormat,
  DXLinkLogLevel,
} = require('@dxfeed/dxlink-api')

// Field lists in tastyware's order (DXLINK.md §9); the client requests them in FEED_SETUP and
// decodes COMPACT data with the lists the server echoes in FEED_CONFIG.
const EVENT_FIELDS = {
  Quote: [
    'eventSymbol', 'eventTime', 'sequence', 'timeNanoPart', 'bidTime', 'bidExchangeCode',
    'askTime', 'askExchangeCode', 'bidPrice', 'askPrice', 'bidSize', 'askSize',
  ],
  Trade: [
    'eventSymbol', 'eventTime', 'time', 'timeNanoPart', 'sequence', 'exchangeCode', 'dayId',
    'tickDirection', 'extendedTradingHours', 'price', 'change', 'size', 'dayVolume',
    'dayTurnover',
  ],
  Greeks: [
    'eventSymbol', 'eventTime', 'eventFlags', 'index', 'time', 'sequence', 'price',
    'volatility', 'delta', 'gamma', 'theta', 'rho', 'vega',
  ],
  Summary: [
    'eventSymbol', 'eventTime', 'dayId', 'dayClosePriceType', 'prevDayId',
    'prevDayClosePriceType', 'openInterest', 'dayOpenPrice', 'dayHighPrice', 'dayLowPrice',
    'dayClosePrice', 'prevDayClosePrice', 'prevDayVolume',
  ],
  Profile: [
    'eventSymbol', 'eventTime', 'description', 'shortSaleRestriction', 'tradingStatus',
    'haltStartTime', 'haltEndTime', 'exDividendDayId', 'statusReason', 'high52WeekPrice',
    'low52WeekPrice', 'beta', 'shares', 'highLimitPrice', 'lowLimitPrice', 'earningsPerShare',
    'exDividendAmount', 'dividendFrequency', 'freeFloat',
  ],
  Candle: [
    'eventSymbol', 'eventTime', 'eventFlags', 'index', 'time', 'sequence', 'count', 'volume',
    'vwap', 'bidVolume', 'askVolume', 'impVolatility', 'openInterest', 'open', 'high', 'low',
    'close',
  ],
  TimeAndSale: [
    'eventSymbol', 'eventTime', 'eventFlags', 'index', 'time', 'timeNanoPart', 'sequence',
    'exchangeCode', 'price', 'size', 'bidPrice', 'askPrice', 'exchangeSaleConditions',
    'tradeThroughExempt', 'aggressorSide', 'spreadLeg', 'extendedTradingHours', 'validTick',
    'type', 'buyer', 'seller',
  ],
  TheoPrice: [
    'eventSymbol', 'eventTime', 'eventFlags', 'index', 'time', 'sequence', 'price',
    'underlyingPrice', 'delta', 'gamma', 'dividend', 'interest',
  ],
}

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const [url, tokenArg, secondsArg, ...symbols] = process.argv.slice(2)
const seconds = Number(secondsArg)
if (!url || tokenArg === undefined || !(seconds > 0) || symbols.length === 0) {
  process.stderr.write('usage: node client.mjs URL TOKEN SECONDS SYMBOL...\n')
  process.exit(2)
}
const token = tokenArg === '' || tokenArg === '-' ? undefined : tokenArg
const tolerated = new Set(
  (process.env.DXLINK_TOLERATE_ERRORS ?? '').split(',').filter((s) => s !== '')
)
const trace = process.env.DXLINK_TRACE === '1'

const counts = {}
const states = []
let fatalErrors = 0
let errorCount = 0
let logCount = 0
let exiting = false

const state = (name) => {
  states.push(name)
  out({ state: name, t: Date.now() })
}

const finish = (code) => {
  if (exiting) return
  exiting = true
  const failed = code !== 0 || fatalErrors > 0 || logCount > 0
  const line = JSON.stringify({
    summary: counts,
    states,
    errors: errorCount,
    logs: logCount,
  })
  try {
    client.close()
  } catch (e) {
    // report, but the summary and exit code matter more than a clean close
    out({ log: 'error', message: 'close failed: ' + String(e) })
  }
  const exitCode = code !== 0 ? code : failed ? 1 : 0
  process.stdout.write(line + '\n', () => process.exit(exitCode))
  setTimeout(() => process.exit(exitCode), 1000).unref()
}

// Anything the client logs through its console Logger (parse failures, unknown messages,
// unhandled errors, listener exceptions) is an error for this harness.
for (const level of ['error', 'warn']) {
  console[level] = (...args) => {
    logCount += 1
    out({
      log: level,
      message: args.map((a) => (a instanceof Error ? a.stack : typeof a === 'string' ? a : JSON.stringify(a))).join(' '),
    })
  }
}
process.on('uncaughtException', (e) => {
  out({ log: 'error', message: 'uncaught: ' + (e?.stack ?? String(e)) })
  logCount += 1
  finish(2)
})
process.on('unhandledRejection', (e) => {
  out({ log: 'error', message: 'unhandled rejection: ' + (e?.stack ?? String(e)) })
  logCount += 1
  finish(2)
})

class TracingWebSocket extends WebSocketImpl {
  constructor(...args) {
    super(...args)
    this.addEventListener('message', (ev) => {
      process.stderr.write(JSON.stringify({ dir: '<', frame: String(ev.data) }) + '\n')
    })
  }

  send(data, ...rest) {
    process.stderr.write(JSON.stringify({ dir: '>', frame: String(data) }) + '\n')
    return super.send(data, ...rest)
  }
}
globalThis.WebSocket = trace ? TracingWebSocket : WebSocketImpl

const client = new DXLinkWebSocketClient({ logLevel: DXLinkLogLevel.WARN })
let appReconnects = 0
let everAuthorized = false

client.addConnectionStateChangeListener((next) => {
  state('connection:' + next)
  // The client gives up (NOT_CONNECTED) when the socket closes while unauthorised, e.g. after
  // the server withdrew an expired token and closed; an app would fetch a token and reconnect.
  if (next === 'NOT_CONNECTED' && everAuthorized && !exiting && appReconnects < 5) {
    appReconnects += 1
    setTimeout(() => {
      if (exiting) return
      state('app:reconnect')
      if (token !== undefined) client.setAuthToken(token)
      client.connect(url)
    }, 200)
  }
})
client.addAuthStateChangeListener((next, prev) => {
  state('auth:' + next)
  if (next === 'AUTHORIZED') everAuthorized = true
  // A later UNAUTHORIZED is a withdrawn (expired) token: the client drops it, so an app
  // supplies a fresh one (DXLINK.md §2); the simulator accepts the same token again.
  if (next === 'UNAUTHORIZED' && prev === 'AUTHORIZED' && token !== undefined) {
    setTimeout(() => {
      if (exiting) return
      state('app:reauth')
      client.setAuthToken(token)
    }, 100)
  }
})
client.addErrorListener((error) => {
  errorCount += 1
  if (!tolerated.has(error.type)) fatalErrors += 1
  out({ error: { type: error.type, message: error.message } })
})

const setupWords = new Set(
  (process.env.DXLINK_SETUP ?? 'period,format,fields').split(',').filter((s) => s !== '')
)
const acceptConfig = {}
if (setupWords.has('period')) acceptConfig.acceptAggregationPeriod = 0.1
if (setupWords.has('format')) acceptConfig.acceptDataFormat = FeedDataFormat.COMPACT
if (setupWords.has('FULL')) acceptConfig.acceptDataFormat = FeedDataFormat.FULL
if (setupWords.has('fields')) {
  acceptConfig.acceptEventFields = Object.fromEntries(
    Object.entries(EVENT_FIELDS).map(([type, fields]) => [
      type,
      setupWords.has('eventType') ? ['eventType', ...fields] : fields,
    ])
  )
}

out({ requested: acceptConfig.acceptEventFields ?? null })
if (token !== undefined) client.setAuthToken(token)
client.connect(url)

const candleContract = process.env.DXLINK_CANDLE_CONTRACT ?? 'HISTORY'
if (!Object.values(FeedContract).includes(candleContract)) {
  process.stderr.write(`DXLINK_CANDLE_CONTRACT must be one of ${Object.values(FeedContract)}\n`)
  process.exit(2)
}
const openFeed = (contract) => {
  const feed = new DXLinkFeed(client, contract)
  feed.addStateChangeListener((next) => state('channel:' + next))
  feed.addConfigChangeListener((config) => out({ config }))
  feed.configure(acceptConfig)
  feed.addEventListener((events) => {
    for (const event of events) {
      counts[event.eventType] = (counts[event.eventType] ?? 0) + 1
      out(event)
    }
  })
  return feed
}
const feed = openFeed(FeedContract.AUTO)
const candleFeed = openFeed(candleContract)

const fromTime = Date.now() - 3600 * 1000
const subscriptions = []
const candles = []
for (const symbol of symbols) {
  if (symbol.startsWith('.')) {
    for (const type of ['Greeks', 'TheoPrice']) subscriptions.push({ type, symbol })
  } else {
    for (const type of ['Quote', 'Trade', 'Summary', 'Profile', 'TimeAndSale']) {
      subscriptions.push({ type, symbol })
    }
    candles.push({ type: 'Candle', symbol: `${symbol}{=1m}`, fromTime })
  }
}
feed.addSubscriptions(subscriptions)
if (candles.length > 0) candleFeed.addSubscriptions(candles)

setTimeout(() => finish(0), seconds * 1000)
// the harness stops a run once it has seen what it waits for: finish as at SECONDS
process.on('SIGTERM', () => finish(0))
