// Error messages name the value a caller passed. String(x) and template literals throw for objects
// without a prototype ("Cannot convert object to primitive value"), so messages use this instead.

/** A short, safe description of any value for an error message ("null", "a string \"x\"", ...). */
export function describeValue(value: unknown): string {
  try {
    switch (typeof value) {
      case "undefined":
        return "undefined";
      case "number":
        return `the number ${String(value)}`;
      case "bigint":
        return `the bigint ${value.toString()}n`;
      case "boolean":
        return `the boolean ${String(value)}`;
      case "string":
        return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
      case "symbol":
        return `a symbol`;
      case "function":
        return "a function";
      default:
        break;
    }
    if (value === null) return "null";
    if (Array.isArray(value)) return `an array of ${value.length}`;
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto === null) return "an object without a prototype";
    const ctor = (proto as { constructor?: unknown }).constructor;
    const name = typeof ctor === "function" ? ctor.name : "";
    return name && name !== "Object" ? `a ${name}` : "an object";
  } catch {
    // a Proxy or a getter that throws: the kind is all we can say
    return typeof value;
  }
}
