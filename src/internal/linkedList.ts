/**
 * A list threaded through its elements: the registry of active transactions and the pending deadlines gain and lose
 * one element per transaction, and a `Map` or `Set` that does so, being old, reallocates its table into objects that
 * outlive a scavenge (see `registry.ts`). Linking an element allocates nothing.
 */

/** @internal An element of a {@link LinkedList}: it carries its own links. */
export interface Linked<T> {
  previous: T | undefined
  next: T | undefined
}

/** @internal A doubly linked list threaded through its elements, in the order they were added. */
export class LinkedList<T extends Linked<T>> {
  private head: T | undefined = undefined
  private last: T | undefined = undefined
  private count = 0

  /** The first element, to walk the list through the elements' `next`. */
  get first(): T | undefined {
    return this.head
  }

  /** How many elements are in the list. */
  get size(): number {
    return this.count
  }

  /** Adds an element at the end (once: an element already in a list must be removed first). */
  add(element: T): void {
    element.previous = this.last
    element.next = undefined
    if (this.last === undefined) this.head = element
    else this.last.next = element
    this.last = element
    this.count++
  }

  /** Removes an element; its links are cleared, so that it holds none of its neighbours. Not in the list: nothing. */
  remove(element: T): void {
    const { next, previous } = element
    if (previous === undefined) {
      // Not in the list (or removed already): nothing to unlink.
      if (this.head !== element) return
      this.head = next
    } else {
      previous.next = next
    }
    if (next === undefined) this.last = previous
    else next.previous = previous
    element.previous = undefined
    element.next = undefined
    this.count--
  }

  /** The elements, first to last, in an array of their own. */
  entries(): Array<T> {
    const out: Array<T> = []
    for (let element = this.head; element !== undefined; element = element.next) out.push(element)
    return out
  }
}
