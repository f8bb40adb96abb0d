// Errors with stable codes. Only the CLI entry turns them into messages and exit codes;
// the README lists every code.

export const ErrorCodes = {
  GAN_DIST_E_CONFIG: 'a configuration value (flag, config-file key or preset) is invalid',
  GAN_DIST_E_BACKEND: 'the requested compute backend cannot be loaded',
  GAN_DIST_E_DATA: 'the training data cannot be used',
  GAN_DIST_E_PROTOCOL: 'a peer sent a message that breaks the wire protocol',
  GAN_DIST_E_AUTH: 'a peer failed authentication or the handshake',
  GAN_DIST_E_RUN_DIR: 'the run directory cannot be used as asked',
  GAN_DIST_E_CHECKPOINT: 'a checkpoint is missing or corrupt',
  GAN_DIST_E_DIVERGED: 'training diverged (every gradient non-finite)',
  GAN_DIST_E_WORKER: 'a worker failed',
  GAN_DIST_E_NETWORK: 'a download or connection failed',
  GAN_DIST_E_USAGE: 'the command line is malformed',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class GanDistError extends Error {
  readonly code: ErrorCode;
  /** What the user can do about it, when there is something. */
  readonly hint?: string;

  constructor(code: ErrorCode, message: string, hint?: string) {
    super(message);
    this.name = 'GanDistError';
    this.code = code;
    this.hint = hint;
  }
}

/** Exit codes used by the CLI entry, by error code. 1 is reserved for unexpected failures. */
export const exitCodes: Record<ErrorCode, number> = {
  GAN_DIST_E_USAGE: 2,
  GAN_DIST_E_CONFIG: 2,
  GAN_DIST_E_BACKEND: 3,
  GAN_DIST_E_DATA: 4,
  GAN_DIST_E_RUN_DIR: 5,
  GAN_DIST_E_CHECKPOINT: 5,
  GAN_DIST_E_DIVERGED: 6,
  GAN_DIST_E_WORKER: 7,
  GAN_DIST_E_NETWORK: 8,
  GAN_DIST_E_PROTOCOL: 9,
  GAN_DIST_E_AUTH: 10,
};
