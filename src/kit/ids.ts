/** The order of member, group and node ids everywhere: plain UTF-16 code unit order, the same in every process. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
