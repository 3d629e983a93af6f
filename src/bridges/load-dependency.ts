import { SagaError } from "../errors.js";

/**
 * Loads a broker client, an optional peer dependency: installing pg-saga does not pull in clients for
 * brokers an application does not use.
 */
export async function loadDependency<T>(name: string, install: string, feature: string): Promise<T> {
  try {
    return (await import(name)) as T;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND")
      throw new SagaError(
        "BRIDGE_DEPENDENCY_MISSING",
        `${feature} needs the ${name} package, which is not installed: run \`${install}\``,
        { cause: err },
      );
    throw err;
  }
}
