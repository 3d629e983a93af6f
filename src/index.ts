/**
 * pg-saga: sagas whose every state change is a PostgreSQL transaction.
 * This file is the whole public surface.
 */
export { defineSaga, SagaDefinition } from "./definition.js";
export type {
  AnySaga,
  BranchOptions,
  BranchOutput,
  GroupData,
  ChildSagaRef,
  ChildStepOptions,
  CompensateContext,
  NextData,
  SagaConfig,
  StepContext,
  StepOptions,
  TransactionalStepContext,
  TransactionalStepOptions,
} from "./definition.js";
export { createSagaEngine } from "./engine.js";
export type { SagaEngine, SagaInstance, SagaPage, SagaState, SagaStepView } from "./engine.js";
export type { SagaChildView } from "./instance-view.js";
export type { EngineOptions } from "./options.js";
export type { ListOptions } from "./list-options.js";
export type { StartOptions } from "./start-options.js";
export type { SagaMetrics } from "./sql/saga-metrics.js";
export type { DashboardHandler, DashboardOptions } from "./dashboard/types.js";
export { checkHealth } from "./health.js";
export type {
  HealthOptions,
  HealthReport,
  OpenTransaction,
  SubscriptionLag,
  WorkerHealth,
} from "./health.js";
export type { StuckReason, StuckSaga } from "./sql/stuck-sagas.js";
export type { SagaWorker, WorkerOptions } from "./worker/run-worker.js";
export type { ResumeOptions } from "./worker/resume.js";
export { retry } from "./retry.js";
export type { Jitter, RetryPolicy } from "./retry.js";
export { compensation } from "./compensation.js";
export type { CompensationStrategy, CompletedStep } from "./compensation.js";
export { BusinessError, RetryableError, SagaError } from "./errors.js";
export type { SagaErrorCode, StoredError } from "./errors.js";
export { toExecutor } from "./executor.js";
export { aes256gcm } from "./codec/aes256gcm.js";
export type { Aes256GcmOptions } from "./codec/aes256gcm.js";
export type { EncryptedValue, PayloadCodec } from "./codec/codec.js";
export type { Executor, QueryResult } from "./executor.js";
export type { Logger } from "./logger.js";
export type { MetricsOptions, WorkerMetricsHandle } from "./observability/worker-observability.js";
export type { Duration } from "./duration.js";
export type {
  AppEvent,
  DeadLetter,
  EventFilter,
  EventHandler,
  RelayOptions,
  RetentionOptions,
  SagaEvent,
  SubscribeOptions,
  Subscription,
  SubscriptionMetrics,
} from "./relay/types.js";
export { handleSignals } from "./worker/signals.js";
export type { SignalOptions } from "./worker/signals.js";
export { natsBridge } from "./bridges/nats-bridge.js";
export type { NatsBridgeOptions } from "./bridges/nats-bridge.js";
export { rabbitBridge } from "./bridges/rabbit-bridge.js";
export type { RabbitBridgeOptions } from "./bridges/rabbit-bridge.js";
export { BridgeRefusal } from "./bridges/bridge.js";
export type {
  Bridge,
  BridgeEnvelope,
  BridgeMessage,
  BridgeOptions,
  BridgeTransport,
} from "./bridges/bridge.js";
export type { BridgeStats } from "./bridges/bridge-metrics.js";
export { applyInbound } from "./bridges/inbound.js";
export type {
  InboundAction,
  InboundConsumer,
  InboundHandler,
  InboundMessage,
  InboundOutcome,
  InboundStats,
} from "./bridges/inbound.js";
export { natsInbound } from "./bridges/nats-inbound.js";
export type { NatsInboundOptions } from "./bridges/nats-inbound.js";
export { rabbitInbound } from "./bridges/rabbit-inbound.js";
export type { RabbitInboundOptions } from "./bridges/rabbit-inbound.js";
export { processOnce } from "./bridges/process-once.js";
export type { ProcessOnceOptions } from "./bridges/process-once.js";
